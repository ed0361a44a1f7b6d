"""What ffprobe says about a file: its streams, and its duration when the header has none."""
from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Iterator

from .models import MediaError, MediaTimeout, ProbeInfo
from .runner import (
    _child_options,
    _Deadline,
    _float_or_none,
    _input_guard,
    _last_error,
    _stream_lines,
    _url,
)

PROBE_TIMEOUT = 60.0


def probe(path: Path, *, ffprobe: str = "ffprobe", timeout: float = PROBE_TIMEOUT) -> ProbeInfo:
    """What ffprobe says about ``path``; MediaError if it cannot read it as mp4, webm or ts."""
    cmd = [ffprobe, "-v", "error", *_input_guard(), "-show_format", "-show_streams",
           "-show_data_hash", "sha256", "-of", "json", _url(path)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              **_child_options())
    except subprocess.TimeoutExpired:
        raise MediaTimeout(f"ffprobe killed at the time limit ({timeout:.1f}s)") from None
    if done.returncode != 0:
        raise MediaError(_last_error(done.stderr.decode("utf-8", "replace").splitlines()))
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise MediaError("ffprobe returned unreadable output") from None
    return _probe_info(data)


def _probe_info(data: dict) -> ProbeInfo:
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    if not fmt.get("format_name") or not streams:
        raise MediaError("no streams found")
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), {})
    audio = next((s for s in streams if s.get("codec_type") == "audio"), {})
    return ProbeInfo(
        format_name=fmt["format_name"],
        duration=_seconds(fmt.get("duration")) or _seconds(video.get("duration")),
        video_codec=video.get("codec_name"),
        width=_int_or_none(video.get("width")),
        height=_int_or_none(video.get("height")),
        has_audio=bool(audio),
        audio_codec=audio.get("codec_name"),
        pix_fmt=video.get("pix_fmt"),
        sample_rate=_int_or_none(audio.get("sample_rate")),
        channels=_int_or_none(audio.get("channels")),
        video_extradata=video.get("extradata_hash"),
        audio_extradata=audio.get("extradata_hash"),
    )


def _seconds(value) -> float | None:
    number = _float_or_none(value)
    return number if number is not None and number > 0 else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _scan_packets(path: Path, ffprobe: str,
                  timeout: float) -> Iterator[tuple[str, float, float, int | None]]:
    """(stream, pts, end, byte position) of every packet, in file order, without decoding."""
    cmd = [ffprobe, "-v", "error", *_input_guard(), "-show_entries",
           "packet=stream_index,pts_time,duration_time,pos", "-of", "compact=p=0", _url(path)]
    with contextlib.closing(_stream_lines(cmd, timeout)) as lines:
        for line in lines:
            fields = dict(item.partition("=")[::2] for item in line.split("|"))
            pts = _float_or_none(fields.get("pts_time", ""))
            if pts is None:
                continue
            end = pts + (_float_or_none(fields.get("duration_time", "")) or 0.0)
            yield fields.get("stream_index", ""), pts, end, _int_or_none(fields.get("pos"))


def _packet_span(path: Path, ffprobe: str, timeout: float) -> float:
    """Duration from the packets themselves, for live streams whose header has none."""
    start = end = None
    for _, pts, stop, _ in _scan_packets(path, ffprobe, timeout):
        start = pts if start is None else min(start, pts)
        end = stop if end is None else max(end, stop)
    return 0.0 if start is None else max(end - start, 0.0)


def _measured_duration(path: Path, info: ProbeInfo, ffprobe: str, deadline: _Deadline) -> float:
    if info.duration is not None:
        return info.duration
    return _packet_span(path, ffprobe, deadline.remaining())
