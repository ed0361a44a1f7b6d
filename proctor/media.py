"""The FFmpeg engine: turn an ordered list of uploaded recording segments into one verified video.

Pure file-in, file-out code: no database, no Celery, no Flask. Everything else in proctor decides
*when* to merge; this module decides *how*, and refuses to hand back anything it has not checked.

How a merge goes (``merge_segments``):

1. Segments are sorted by ``seq``; ``captured_at`` values that contradict that order are reported
   in ``order_warnings`` but do not change it (the client's clock is less trustworthy than its
   counter).
2. Every segment is probed with ffprobe; the container is never guessed from the file name.
   Segments are grouped into *parts*:

   * a readable file starts a new part;
   * an unreadable file right after an *open-ended* head (a live WebM without a Duration, or a
     fragmented MP4 - what browsers' ``MediaRecorder`` emits) that does not itself start with a
     container header is a time-sliced continuation chunk: its bytes are appended to the head's;
   * anything else unreadable is skipped and listed in ``skipped``.

3. The method:

   * ``"bytes-remux"`` - the parts include MediaRecorder chunk streams, whose joined bytes are
     remuxed with stream copy (``-fflags +genpts``);
   * ``"concat-copy"`` - self-contained files with identical stream parameters, joined by the
     concat demuxer with stream copy;
   * ``"reencode"`` - codecs, resolutions, extradata or containers differ (or a copy attempt
     failed verification): everything is decoded, scaled and padded to one even-sized frame
     (the size covering most of the recording) and encoded as H.264/AAC MP4.

4. The result is written to a ``.tmp-`` file beside the output, verified with ffprobe (a video
   stream, audio if the inputs had audio, a duration within max(2 %, 1 s) of the inputs'),
   fsynced and renamed into place. A copy method that fails or does not verify is retried once
   as a re-encode.

**The container is chosen here, not by the caller**: the suffix of ``output`` is replaced by
``.webm`` (VP8/VP9/AV1 with Opus/Vorbis, stream copy) or ``.mp4`` (everything else), and the path
actually written is ``MergeReport.output``.

Uploaded files are hostile input for a complex decoder: ffmpeg gets argument lists (never a
shell), ``file:`` URLs only (``-protocol_whitelist file``), only the three container demuxers we
accept (``-format_whitelist``), and a deadline after which it is killed.

Errors: ``MediaError`` means this input cannot produce a recording (retrying will not help);
``MediaTimeout`` means the deadline passed (a retry may succeed on a less loaded machine). An
``OSError`` (disk full, ffmpeg not installed) is left to propagate: it is not a property of the
input.
"""
from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

__all__ = [
    "MediaError",
    "MediaTimeout",
    "Segment",
    "ProbeInfo",
    "MergeReport",
    "probe",
    "merge_segments",
    "order_directory",
    "merge_directory",
]

TMP_PREFIX = ".tmp-"
PROBE_TIMEOUT = 60.0
HASH_CHUNK = 1024 * 1024
# Demuxers an upload may be opened with; everything else (HLS playlists, images, raw streams...)
# is refused before a parser sees it.
DEMUXERS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpegts")
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
WEBM_VIDEO = {"vp8", "vp9", "av1"}
WEBM_AUDIO = {None, "opus", "vorbis"}
MP4_VIDEO = {"h264", "hevc"}
MP4_AUDIO = {None, "aac", "mp3", "opus"}
REENCODE_VIDEO = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
REENCODE_AUDIO = ["-c:a", "aac", "-b:a", "128k"]
STDERR_TAIL = 30


class MediaError(Exception):
    """Nothing playable can be produced from these inputs."""


class MediaTimeout(MediaError):
    """ffmpeg or ffprobe ran past the deadline and was killed; the caller may retry."""


@dataclass
class Segment:
    seq: int
    path: Path
    captured_at: datetime | None = None


@dataclass
class ProbeInfo:
    format_name: str
    duration: float | None
    video_codec: str | None
    width: int | None
    height: int | None
    has_audio: bool
    # Beyond the basics: what else must match for stream copy to be safe.
    audio_codec: str | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_extradata: str | None = None
    audio_extradata: str | None = None

    @property
    def family(self) -> str:
        """The demuxer family: "mp4", "matroska" or "mpegts"."""
        if self.format_name.startswith("mov"):
            return "mp4"
        if self.format_name.startswith("matroska"):
            return "matroska"
        return self.format_name


@dataclass
class MergeReport:
    output: Path
    size: int
    duration: float
    sha256: str
    method: str
    segments_used: list[int]
    skipped: list[dict]
    order_warnings: list[str]
    expected_duration: float | None = None
    fallback_reason: str | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["output"] = str(self.output)
        return data


# --------------------------------------------------------------------------------------------
# Running ffmpeg and ffprobe


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self, cap: float | None = None) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise MediaTimeout("media processing exceeded its time limit")
        return left if cap is None else min(left, cap)


def _url(path: Path) -> str:
    # "file:" keeps a name containing ":" or starting with "-" from being read as a protocol
    # or an option.
    return f"file:{Path(path).resolve()}"


def _input_guard(*extra_formats: str) -> list[str]:
    return ["-protocol_whitelist", "file",
            "-format_whitelist", ",".join(DEMUXERS + extra_formats)]


def _last_error(lines) -> str:
    for line in reversed(list(lines)):
        line = line.strip()
        if line:
            # ffmpeg prefixes errors with the URL; the report names the segment already.
            return re.sub(r"^file:\S*?: ", "", line)[:300]
    return "no error message"


def _stream_lines(cmd: list[str], timeout: float) -> Iterator[str]:
    """Run ``cmd`` and yield its stdout lines; kill it at ``timeout``.

    Stderr is drained in a thread and only its tail is kept, so a decoder spewing errors about a
    corrupt file can neither block the pipe nor fill memory. Raises MediaTimeout if killed,
    _CommandFailed on a non-zero exit.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        for raw in proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\n")
        proc.wait()
    finally:
        # Also reached when the consumer stops early or raises: never leave ffmpeg running.
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        drain.join(timeout=5)
    if expired.is_set():
        raise MediaTimeout(f"{Path(cmd[0]).name} killed after {timeout:.0f}s")
    if proc.returncode != 0:
        raise _CommandFailed(_last_error(tail))


def _drain(pipe, tail: collections.deque) -> None:
    with pipe:
        for raw in pipe:
            tail.append(raw.decode("utf-8", "replace"))


class _CommandFailed(MediaError):
    pass


# --------------------------------------------------------------------------------------------
# Probing


def probe(path: Path, *, ffprobe: str = "ffprobe", timeout: float = PROBE_TIMEOUT) -> ProbeInfo:
    """What ffprobe says about ``path``; MediaError if it cannot read it as mp4, webm or ts."""
    cmd = [ffprobe, "-v", "error", *_input_guard(), "-show_format", "-show_streams",
           "-show_data_hash", "sha256", "-of", "json", _url(path)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MediaTimeout(f"ffprobe timed out after {timeout:.0f}s") from None
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
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _packet_span(path: Path, ffprobe: str, timeout: float) -> float | None:
    """Duration from the packets themselves, for live streams whose header has none."""
    cmd = [ffprobe, "-v", "error", *_input_guard(), "-show_entries",
           "packet=pts_time,duration_time", "-of", "csv=p=0", _url(path)]
    start = end = None
    for line in _stream_lines(cmd, timeout):
        fields = line.split(",")
        pts = _float_or_none(fields[0])
        if pts is None:
            continue
        dur = _float_or_none(fields[1]) if len(fields) > 1 else None
        start = pts if start is None else min(start, pts)
        end = max(end or pts, pts + (dur or 0.0))
    if start is None or end is None or end <= start:
        return None
    return end - start


def _float_or_none(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _measured_duration(path: Path, info: ProbeInfo, ffprobe: str, deadline: _Deadline) -> float:
    if info.duration is not None:
        return info.duration
    return _packet_span(path, ffprobe, deadline.remaining()) or 0.0


# --------------------------------------------------------------------------------------------
# Planning: which bytes form which part


@dataclass
class _Part:
    head: Segment
    info: ProbeInfo
    open_ended: bool
    chunks: list[Segment] = field(default_factory=list)
    path: Path | None = None  # the file ffmpeg reads: the head itself, or the joined chunks
    duration: float = 0.0

    @property
    def seqs(self) -> list[int]:
        return [s.seq for s in self.chunks]


class _TempFiles:
    """Names for scratch files beside the output, all removed when the merge ends."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.token = secrets.token_hex(4)
        self.paths: list[Path] = []

    def new(self, role: str, suffix: str = "") -> Path:
        path = self.directory / f"{TMP_PREFIX}{self.token}-{role}{suffix}"
        self.paths.append(path)
        return path

    def cleanup(self) -> None:
        for path in self.paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _order(segments: list[Segment]) -> tuple[list[Segment], list[str]]:
    ordered = sorted(segments, key=lambda s: s.seq)
    seqs = [s.seq for s in ordered]
    if len(set(seqs)) != len(seqs):
        dupes = sorted({s for s in seqs if seqs.count(s) > 1})
        raise ValueError(f"duplicate segment seqs: {dupes}")
    warnings = []
    previous = None
    for seg in ordered:
        if seg.captured_at is None:
            continue
        if previous is not None and seg.captured_at < previous.captured_at:
            warnings.append(f"seq {seg.seq} captured before seq {previous.seq}")
        previous = seg
    return ordered, warnings


def _plan(ordered: list[Segment], ffprobe: str, deadline: _Deadline,
          temp: _TempFiles) -> tuple[list[_Part], list[dict]]:
    parts: list[_Part] = []
    skipped: list[dict] = []
    current: _Part | None = None  # the part a continuation chunk may still join

    def skip(seg: Segment, reason: str) -> None:
        skipped.append({"seq": seg.seq, "path": str(seg.path), "reason": reason})

    for seg in ordered:
        reason = _unusable_file(seg.path)
        if reason:
            skip(seg, reason)
            current = None
            continue
        info, reason = _probe_segment(seg, ffprobe, deadline)
        if info is not None:
            current = _Part(seg, info, _is_open_ended(seg.path, info), [seg])
            parts.append(current)
        elif current is not None and current.open_ended and not _starts_with_header(seg.path):
            current.chunks.append(seg)
        else:
            if current is None and not _starts_with_header(seg.path):
                reason += " (no readable header chunk before it)"
            skip(seg, reason)
            # Chunks after a broken head belong to that head, not to the previous recording.
            current = None
    for part in parts:
        _materialise(part, ffprobe, deadline, temp)
    return parts, skipped


def _unusable_file(path: Path) -> str | None:
    try:
        if not path.is_file():
            return "not a regular file" if path.exists() else "file missing"
        if path.stat().st_size == 0:
            return "empty file"
    except OSError as err:
        return f"cannot stat: {err.strerror}"
    return None


def _probe_segment(seg: Segment, ffprobe: str,
                   deadline: _Deadline) -> tuple[ProbeInfo | None, str]:
    try:
        info = probe(seg.path, ffprobe=ffprobe, timeout=deadline.remaining(PROBE_TIMEOUT))
    except MediaTimeout:
        deadline.remaining()  # out of total time: give up on the whole merge
        return None, "ffprobe: timed out"
    except MediaError as err:
        return None, f"ffprobe: {err}"
    if info.video_codec is None:
        return None, "no video stream"
    return info, ""


def _head_bytes(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _starts_with_header(path: Path) -> bool:
    head = _head_bytes(path, 12)
    return head.startswith(EBML_MAGIC) or head[4:8] == b"ftyp"


def _is_open_ended(path: Path, info: ProbeInfo) -> bool:
    """Could chunks that follow this file be the rest of its byte stream?

    MediaRecorder writes WebM without a Duration (it does not know it yet) and Safari writes
    fragmented MP4; a file finished by a seekable writer has neither property.
    """
    if info.family == "matroska":
        return info.duration is None
    if info.family == "mp4":
        return _mp4_has_mvex(path)
    return False


def _mp4_has_mvex(path: Path) -> bool:
    with open(path, "rb") as f:
        moov = _find_box(f, b"moov", limit=16)
        if moov is None:
            return False
        start, end = moov
        f.seek(start)
        return _find_box(f, b"mvex", limit=64, end=end) is not None


def _find_box(f, kind: bytes, *, limit: int, end: int | None = None) -> tuple[int, int] | None:
    """Locate an ISO-BMFF box among the siblings starting at f's position: (body start, end)."""
    for _ in range(limit):
        pos = f.tell()
        header = f.read(8)
        if len(header) < 8 or (end is not None and pos >= end):
            return None
        size, box = int.from_bytes(header[:4], "big"), header[4:8]
        body = pos + 8
        if size == 1:
            size = int.from_bytes(f.read(8), "big")
            body += 8
        elif size == 0:
            size = os.fstat(f.fileno()).st_size - pos
        if size < body - pos:
            return None
        if box == kind:
            return body, pos + size
        f.seek(pos + size)
    return None


def _materialise(part: _Part, ffprobe: str, deadline: _Deadline, temp: _TempFiles) -> None:
    if len(part.chunks) == 1:
        part.path = part.head.path
    else:
        suffix = ".webm" if part.info.family == "matroska" else ".mp4"
        part.path = temp.new(f"joined-{part.head.seq}", suffix)
        with open(part.path, "wb") as out:
            for chunk in part.chunks:
                with open(chunk.path, "rb") as src:
                    shutil.copyfileobj(src, out, HASH_CHUNK)
        try:
            part.info = probe(part.path, ffprobe=ffprobe, timeout=deadline.remaining(PROBE_TIMEOUT))
        except MediaTimeout:
            raise
        except MediaError:
            pass  # the head alone was readable; keep its description
    # An open-ended stream's header knows no duration, and a fragmented MP4 head only its first
    # fragments: count the packets instead.
    if part.open_ended:
        part.duration = _packet_span(part.path, ffprobe, deadline.remaining()) or 0.0
    else:
        part.duration = _measured_duration(part.path, part.info, ffprobe, deadline)


# --------------------------------------------------------------------------------------------
# Choosing and building the ffmpeg command


def _copy_key(info: ProbeInfo) -> tuple:
    # A concat in copy mode keeps the first file's codec parameters for all of them, so every
    # one of these must match or the later segments decode as garbage or are dropped.
    return (info.family, info.video_codec, info.width, info.height, info.pix_fmt,
            info.video_extradata, info.has_audio, info.audio_codec, info.sample_rate,
            info.channels, info.audio_extradata)


def _copy_container(parts: list[_Part]) -> str | None:
    """"webm" or "mp4" if all parts can be stream-copied into one file, else None."""
    if len({_copy_key(p.info) for p in parts}) != 1:
        return None
    info = parts[0].info
    audio = info.audio_codec if info.has_audio else None
    if info.video_codec in WEBM_VIDEO and audio in WEBM_AUDIO:
        return "webm"
    if info.video_codec in MP4_VIDEO and audio in MP4_AUDIO:
        return "mp4"
    return None


def _concat_list(paths: list[Path], temp: _TempFiles, name: str) -> Path:
    listing = temp.new(name, ".txt")
    lines = ["ffconcat version 1.0"]
    for path in paths:
        url = _url(path)
        if "\n" in url or "\r" in url:
            # The list is line-based and has no escape for a line break: use a link instead.
            link = temp.new(f"link-{len(lines)}", path.suffix[:8])
            link.symlink_to(Path(path).resolve())
            url = _url(link)
        lines.append("file " + _concat_quote(url))
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _concat_quote(text: str) -> str:
    # Inside single quotes nothing is special except the closing quote, which is written as
    # close-quote, escaped quote, reopen-quote.
    return "'" + text.replace("'", "'\\''") + "'"


def _input_args(paths: list[Path], temp: _TempFiles, name: str) -> list[str]:
    if len(paths) == 1:
        return ["-fflags", "+genpts", *_input_guard(), "-i", _url(paths[0])]
    listing = _concat_list(paths, temp, name)
    return ["-fflags", "+genpts", "-f", "concat", "-safe", "0", *_input_guard("concat"),
            "-i", _url(listing)]


def _copy_args(parts: list[_Part], container: str, temp: _TempFiles) -> list[str]:
    args = _input_args([p.path for p in parts], temp, "list")
    args += ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy"]
    if container == "mp4":
        args += ["-movflags", "+faststart", "-f", "mp4"]
    else:
        args += ["-f", "webm"]
    return args


def _runs(parts: list[_Part]) -> list[list[_Part]]:
    """Consecutive parts that share stream parameters: one decoder input each."""
    runs: list[list[_Part]] = []
    for part in parts:
        if runs and _copy_key(runs[-1][-1].info) == _copy_key(part.info):
            runs[-1].append(part)
        else:
            runs.append([part])
    return runs


def _target_size(parts: list[_Part]) -> tuple[int, int]:
    """The frame size covering most of the recording (earliest wins a tie), made even."""
    weight: dict[tuple[int, int], float] = {}
    for part in parts:
        size = (part.info.width or 0, part.info.height or 0)
        weight[size] = weight.get(size, 0.0) + max(part.duration, 0.001)
    width, height = max(weight, key=lambda s: weight[s])  # dicts keep first-seen order
    if width < 2 or height < 2:
        width, height = 1280, 720
    return width - width % 2, height - height % 2


def _reencode_args(parts: list[_Part], temp: _TempFiles) -> list[str]:
    width, height = _target_size(parts)
    with_audio = any(p.info.has_audio for p in parts)
    runs = _runs(parts)
    args: list[str] = []
    graph: list[str] = []
    pads: list[str] = []
    for i, run in enumerate(runs):
        args += _input_args([p.path for p in run], temp, f"list-{i}")
        graph.append(
            f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease"
            f":force_divisible_by=2,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
            f"format=yuv420p[v{i}]"
        )
        pads.append(f"[v{i}]")
        if not with_audio:
            continue
        if run[0].info.has_audio:
            graph.append(f"[{i}:a:0]aresample=48000:async=1:first_pts=0,"
                         f"aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo[a{i}]")
        else:
            # concat pads a short audio segment with silence up to its video's length.
            graph.append(f"anullsrc=r=48000:cl=stereo,atrim=duration=0.1,"
                         f"aformat=sample_fmts=fltp[a{i}]")
        pads.append(f"[a{i}]")
    graph.append("".join(pads) + f"concat=n={len(runs)}:v=1:a={int(with_audio)}"
                 + ("[v][a]" if with_audio else "[v]"))
    args += ["-filter_complex", ";".join(graph), "-map", "[v]"]
    if with_audio:
        args += ["-map", "[a]", *REENCODE_AUDIO]
    # Screen recordings are variable-frame-rate; forcing CFR would invent thousands of frames.
    args += [*REENCODE_VIDEO, "-vsync", "vfr", "-max_muxing_queue_size", "4096",
             "-movflags", "+faststart", "-f", "mp4"]
    return args


def _run_ffmpeg(ffmpeg: str, args: list[str], output: Path, expected: float,
                report: Callable[[float], None], deadline: _Deadline) -> None:
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
           "-progress", "pipe:1", *args, "-y", _url(output)]
    for line in _stream_lines(cmd, deadline.remaining()):
        key, _, value = line.partition("=")
        if key in ("out_time_us", "out_time_ms") and expected > 0:
            micros = _float_or_none(value)
            if micros is not None:
                report(micros / 1e6 / expected)


class _Progress:
    """Forward monotonic fractions to the caller; 1.0 is kept for 'verified and in place'."""

    def __init__(self, callback: Callable[[float], None] | None):
        self.callback = callback
        self.last = -1.0

    def __call__(self, fraction: float) -> None:
        self._send(min(max(fraction, 0.0), 0.99))

    def done(self) -> None:
        self._send(1.0)

    def _send(self, fraction: float) -> None:
        if self.callback is not None and fraction > self.last:
            self.last = fraction
            self.callback(fraction)


# --------------------------------------------------------------------------------------------
# Verification and publishing


def _verify(path: Path, expected: float, need_audio: bool, ffprobe: str,
            deadline: _Deadline) -> float:
    """The output's duration, or MediaError saying what is wrong with it."""
    try:
        info = probe(path, ffprobe=ffprobe, timeout=deadline.remaining(PROBE_TIMEOUT))
    except MediaTimeout:
        raise
    except MediaError as err:
        raise MediaError(f"output unreadable: {err}") from None
    if info.video_codec is None:
        raise MediaError("output has no video stream")
    if need_audio and not info.has_audio:
        raise MediaError("output lost the audio stream")
    duration = _measured_duration(path, info, ffprobe, deadline)
    tolerance = max(0.02 * expected, 1.0)
    if abs(duration - expected) > tolerance:
        raise MediaError(f"output lasts {duration:.2f}s, inputs {expected:.2f}s")
    return duration


def _publish(temp_output: Path, final: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(temp_output, "rb") as f:
        for block in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(block)
        os.fsync(f.fileno())
        size = os.fstat(f.fileno()).st_size
    os.replace(temp_output, final)
    _fsync_dir(final.parent)
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Public entry points


def merge_segments(segments: list[Segment], output: Path, *, ffmpeg: str = "ffmpeg",
                   ffprobe: str = "ffprobe", progress: Callable[[float], None] | None = None,
                   timeout: float = 1500) -> MergeReport:
    """Merge ``segments`` into one verified recording at ``output`` with its suffix replaced.

    ``timeout`` bounds the whole merge (every probe and ffmpeg run). ``progress`` receives
    increasing fractions in [0, 0.99] while ffmpeg runs and 1.0 once the file is in place; an
    exception raised by it aborts the merge (ffmpeg is killed, scratch files removed).
    Duplicate seqs raise ValueError.
    """
    output = Path(output)
    deadline = _Deadline(timeout)
    ordered, warnings = _order(segments)
    if not ordered:
        raise MediaError("no segments to merge")
    temp = _TempFiles(output.parent)
    try:
        parts, skipped = _plan(ordered, ffprobe, deadline, temp)
        if not parts:
            raise MediaError(f"no readable segment among {len(ordered)}: "
                             + "; ".join(f"seq {s['seq']}: {s['reason']}" for s in skipped[:5]))
        report = _Progress(progress)
        method, container, fallback, duration, temp_output = _produce(
            parts, temp, ffmpeg, ffprobe, report, deadline)
        final = output.with_suffix("." + container)
        size, sha256 = _publish(temp_output, final)
        report.done()
    finally:
        temp.cleanup()
    return MergeReport(
        output=final, size=size, duration=round(duration, 3), sha256=sha256, method=method,
        segments_used=[seq for p in parts for seq in p.seqs], skipped=skipped,
        order_warnings=warnings, expected_duration=round(sum(p.duration for p in parts), 3),
        fallback_reason=fallback,
    )


def _produce(parts: list[_Part], temp: _TempFiles, ffmpeg: str, ffprobe: str,
             report: _Progress, deadline: _Deadline) -> tuple[str, str, str | None, float, Path]:
    """Write and verify the merged file: (method, container, fallback reason, duration, path)."""
    expected = sum(p.duration for p in parts)
    need_audio = any(p.info.has_audio for p in parts)
    container = _copy_container(parts)
    fallback = None
    if container is not None:
        method = "bytes-remux" if any(p.open_ended for p in parts) else "concat-copy"
        path = temp.new("out", "." + container)
        try:
            _run_ffmpeg(ffmpeg, _copy_args(parts, container, temp), path, expected, report,
                        deadline)
            duration = _verify(path, expected, need_audio, ffprobe, deadline)
            return method, container, None, duration, path
        except MediaTimeout:
            raise
        except MediaError as err:
            fallback = f"{method} failed: {err}"
    path = temp.new("out-reencode", ".mp4")
    try:
        _run_ffmpeg(ffmpeg, _reencode_args(parts, temp), path, expected, report, deadline)
        duration = _verify(path, expected, need_audio, ffprobe, deadline)
    except MediaTimeout:
        raise
    except MediaError as err:
        raise MediaError(f"reencode failed: {err}" + (f" (after {fallback})" if fallback else "")) \
            from None
    return "reencode", "mp4", fallback, duration, path


def merge_directory(directory: Path, output: Path, **kw) -> MergeReport:
    """Merge the media files of a folder, in ``order_directory`` order.

    Segments are numbered by position (0, 1, ...); ``skipped`` entries carry each file's path.
    Files that are this merge's own output (``output`` with any suffix we may give it) are left
    out, so a merge can be run again into the same folder.
    """
    directory, output = Path(directory), Path(output)
    own = {output.resolve(), output.with_suffix(".mp4").resolve(),
           output.with_suffix(".webm").resolve()}
    paths = [p for p in order_directory(directory) if p.resolve() not in own]
    if not paths:
        raise MediaError(f"no segment files in {directory}")
    segments = [Segment(seq=i, path=p) for i, p in enumerate(paths)]
    return merge_segments(segments, output, **kw)


# --------------------------------------------------------------------------------------------
# Ordering folders of segments that come from elsewhere

_TIMESTAMP = re.compile(
    r"(?<!\d)((?:19|20)\d\d)[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])[T_. -]?"
    r"([01]\d|2[0-3])[-_.:h]?([0-5]\d)[-_.:m]?([0-5]\d)(?:[.,_-]?(\d{1,6}))?(?!\d)"
)
_DIGITS = re.compile(r"\d+")
_TEMP_SUFFIXES = {".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp"}


def order_directory(directory: Path) -> list[Path]:
    """The segment files of ``directory`` in recording order.

    Sequence first, timestamp as fallback, decided for the whole folder: if every file name
    carries a distinct sequence number (``seg_12.mp4``, ``0003.webm``) that order is used; else
    if every name carries a timestamp (``20241105_101502.mp4``, ``2024-11-05T10-15-02.webm``)
    that one; else modification time. Hidden files (including our ``.tmp-`` files), editor and
    download leftovers, directories and symlinks are ignored.
    """
    files = [p for p in Path(directory).iterdir() if _is_candidate(p)]
    names = {p: p.stem for p in files}
    stamps = {p: _timestamp(names[p]) for p in files}
    seqs = _sequence_numbers({p: _TIMESTAMP.sub(" ", names[p]) for p in files})
    if all(seqs.get(p) is not None for p in files) and len(set(seqs.values())) == len(files):
        return sorted(files, key=lambda p: (seqs[p], p.name))
    if all(stamps[p] is not None for p in files):
        return sorted(files, key=lambda p: (stamps[p], p.name))
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith((".", "~")) or name.endswith("~"):
        return False
    if path.suffix.lower() in _TEMP_SUFFIXES:
        return False
    return path.is_file() and not path.is_symlink()


def _timestamp(stem: str) -> datetime | None:
    match = _TIMESTAMP.search(stem)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int((fraction or "0").ljust(6, "0")[:6]))
    except ValueError:
        return None


def _sequence_numbers(stems: dict[Path, str]) -> dict[Path, int | None]:
    """The counter in each name: the number that varies across the folder (``seg_3_720p``)."""
    numbers = {p: [int(d) for d in _DIGITS.findall(s)] for p, s in stems.items()}
    counts = {len(n) for n in numbers.values()}
    if len(counts) == 1 and (count := counts.pop()) > 0:
        varying = [i for i in range(count) if len({n[i] for n in numbers.values()}) > 1]
        index = varying[-1] if varying else count - 1
        return {p: n[index] for p, n in numbers.items()}
    return {p: (n[-1] if n else None) for p, n in numbers.items()}
