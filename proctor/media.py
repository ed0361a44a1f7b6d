"""The FFmpeg engine: turn an ordered list of uploaded recording segments into one verified video.

Pure file-in, file-out code: no database, no Celery, no Flask. Everything else in proctor decides
*when* to merge; this module decides *how*, and refuses to hand back anything it has not checked.

How a merge goes (``merge_segments``):

1. Segments are sorted by ``seq``; ``captured_at`` values that contradict that order are reported
   in ``order_warnings`` but do not change it (the client's clock is less trustworthy than its
   counter).
2. Every segment is probed with ffprobe; the container is never guessed from the file name.
   Segments are grouped into *parts*:

   * a readable file (with a video stream) starts a new part;
   * an unreadable file right after an *open-ended* head (a live WebM without a Duration, or a
     fragmented MP4 - what browsers' ``MediaRecorder`` emits) that does not itself start with a
     container header is a time-sliced continuation chunk: its bytes are appended to the head's.
     If the joined stream's timestamps jump back at a chunk, that chunk and the rest belong to a
     later recording whose header chunk is missing: they are cut off and skipped (left on disk)
     rather than glued on;
   * anything else unreadable is skipped. ``skipped`` entries are
     ``{"seq", "path", "reason"}``.

3. The method (``MergeReport.method``):

   * ``"bytes-remux"`` - the parts include MediaRecorder streams (byte-joined chunks, or a
     single open-ended file), remuxed with stream copy (``-fflags +genpts``); several such
     streams, e.g. after the recorder restarted, are joined with the concat demuxer;
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
accept (``-format_whitelist``), and a deadline after which it is killed. On Linux ffmpeg also
dies with the worker process that started it (``PR_SET_PDEATHSIG``), so a SIGKILLed Celery
worker leaves no orphan encoding on; its ``.tmp-<output stem>-*`` files remain for a sweeper.

Known limits: a headerless file of random bytes *inside* a MediaRecorder stream cannot be told
from a real chunk; it is appended (the demuxer resyncs past it) and counted as used. A resolution
change inside one MediaRecorder stream is copied as it is. A self-contained file whose index
promises more media than it holds fails verification, and with it the merge (MediaError).

Errors: ``MediaError`` means this input cannot produce a recording (retrying will not help);
``MediaTimeout`` means the deadline passed (a retry may succeed on a less loaded machine). An
``OSError`` (disk full, ffmpeg not installed) is left to propagate: it is not a property of the
input.
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import ctypes
import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
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

from .storage import TMP_PREFIX, fsync_dir  # noqa: E402 - one rule for scratch files and syncs
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
# Within one stream, packets in file order are in timestamp order give or take B-frame
# reordering; a jump back further than this means a different recording.
RESTART_SLACK = 1.0
RESTART_REASON = ("timestamps restart: continuation chunk of a later recording whose header "
                  "chunk is missing")


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
    return f"file:{os.path.abspath(path)}"


def _load_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Runs in the child before exec: if the worker is SIGKILLed, ffmpeg goes with it.

    Otherwise an orphaned ffmpeg keeps burning CPU on a merge nobody waits for, while the
    retried merge starts another one. (Linux signals the death of the *thread* that started the
    child; the merge waits for its children in that thread, so that is never too early.)
    """
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child_options() -> dict:
    if _PRCTL is None:
        return {}
    return {"preexec_fn": functools.partial(_die_with_parent, os.getpid())}


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
                            stderr=subprocess.PIPE, **_child_options())
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
        raise MediaTimeout(f"{Path(cmd[0]).name} killed at the time limit ({timeout:.1f}s left)")
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


def _float_or_none(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _measured_duration(path: Path, info: ProbeInfo, ffprobe: str, deadline: _Deadline) -> float:
    if info.duration is not None:
        return info.duration
    return _packet_span(path, ffprobe, deadline.remaining())


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

    def __init__(self, output: Path):
        self.directory = output.parent
        # The output's name tells an operator whose leftovers a crashed merge left behind.
        self.prefix = f"{TMP_PREFIX}{output.stem[:60]}-{secrets.token_hex(4)}"
        self.paths: list[Path] = []

    def new(self, role: str, suffix: str = "") -> Path:
        path = self.directory / f"{self.prefix}-{len(self.paths)}-{role}{suffix}"
        self.paths.append(path)
        return path

    def cleanup(self) -> None:
        for path in self.paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _order(segments: list[Segment]) -> tuple[list[Segment], list[str]]:
    ordered = sorted((replace(s, path=Path(s.path)) for s in segments), key=lambda s: s.seq)
    seqs = [s.seq for s in ordered]
    if len(set(seqs)) != len(seqs):
        dupes = sorted({s for s in seqs if seqs.count(s) > 1})
        raise ValueError(f"duplicate segment seqs: {dupes}")
    warnings = []
    previous: Segment | None = None
    for seg in ordered:
        if seg.captured_at is None:
            continue
        if previous is not None and _utc(seg.captured_at) < _utc(previous.captured_at):
            warnings.append(f"seq {seg.seq} captured before seq {previous.seq}")
        previous = seg
    return ordered, warnings


def _utc(moment: datetime) -> datetime:
    # Naive values are taken as UTC rather than letting one stray value raise TypeError.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _plan(ordered: list[Segment], ffprobe: str, deadline: _Deadline,
          temp: _TempFiles) -> tuple[list[_Part], list[dict]]:
    parts, skipped = _group(ordered, ffprobe, deadline)
    for part in parts:
        for seg in _materialise(part, ffprobe, deadline, temp):
            skipped.append({"seq": seg.seq, "path": str(seg.path), "reason": RESTART_REASON})
    skipped.sort(key=lambda entry: entry["seq"])
    return parts, skipped


def _group(ordered: list[Segment], ffprobe: str,
           deadline: _Deadline) -> tuple[list[_Part], list[dict]]:
    parts: list[_Part] = []
    skipped: list[dict] = []
    current: _Part | None = None  # the part a continuation chunk may still join
    after_skip = False
    for seg in ordered:
        info, reason = _probe_segment(seg, ffprobe, deadline)
        if info is not None:
            current = _Part(seg, info, _is_open_ended(seg.path, info), [seg])
            parts.append(current)
        elif current is not None and current.open_ended and _could_continue(seg.path):
            current.chunks.append(seg)
        else:
            if after_skip and _could_continue(seg.path):
                reason += "; follows an unreadable segment (a lost header chunk?)"
            skipped.append({"seq": seg.seq, "path": str(seg.path), "reason": reason})
            # Chunks after a broken head belong to that head, not to the previous recording.
            current = None
        after_skip = info is None and current is None
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
    unusable = _unusable_file(seg.path)
    if unusable:
        return None, unusable
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


def _could_continue(path: Path) -> bool:
    """Might this unreadable file be the middle of a byte stream (no container header)?"""
    if _unusable_file(path):
        return False
    with open(path, "rb") as f:
        head = f.read(12)
    return not (head.startswith(EBML_MAGIC) or head[4:8] == b"ftyp")


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


def _materialise(part: _Part, ffprobe: str, deadline: _Deadline,
                 temp: _TempFiles) -> list[Segment]:
    """Give the part one file for ffmpeg and its duration; return chunks that had to be cut."""
    if len(part.chunks) == 1:
        part.path = part.head.path
        # An open-ended stream's header knows no duration, and a fragmented MP4 head only its
        # first fragments: count the packets instead.
        part.duration = (_packet_span(part.path, ffprobe, deadline.remaining())
                         if part.open_ended else
                         _measured_duration(part.path, part.info, ffprobe, deadline))
        return []
    offsets = _join(part, temp)
    spans = _chunk_spans(part.path, offsets, ffprobe, deadline.remaining())
    cut = _restart_index(spans)
    dropped: list[Segment] = []
    if cut is not None:
        dropped = part.chunks[cut:]
        del part.chunks[cut:]
        os.truncate(part.path, offsets[cut])
        spans = spans[:cut]
    part.duration = _overall_span(spans)
    try:
        part.info = probe(part.path, ffprobe=ffprobe, timeout=deadline.remaining(PROBE_TIMEOUT))
    except MediaTimeout:
        raise
    except MediaError:
        pass  # the head alone was readable; keep its description
    return dropped


def _join(part: _Part, temp: _TempFiles) -> list[int]:
    """Concatenate the part's chunk files; return where each chunk starts in the result."""
    suffix = ".webm" if part.info.family == "matroska" else ".mp4"
    part.path = temp.new(f"joined-{part.head.seq}", suffix)
    offsets = []
    with open(part.path, "wb") as out:
        for chunk in part.chunks:
            offsets.append(out.tell())
            with open(chunk.path, "rb") as src:
                shutil.copyfileobj(src, out, HASH_CHUNK)
    return offsets


def _chunk_spans(path: Path, offsets: list[int], ffprobe: str,
                 timeout: float) -> list[dict[str, list[float]]]:
    """Per chunk, per stream: [earliest pts, latest end] of the packets stored in that chunk."""
    spans: list[dict[str, list[float]]] = [{} for _ in offsets]
    for stream, pts, end, pos in _scan_packets(path, ffprobe, timeout):
        index = len(offsets) - 1 if pos is None else max(bisect.bisect_right(offsets, pos) - 1, 0)
        span = spans[index].setdefault(stream, [pts, end])
        span[0], span[1] = min(span[0], pts), max(span[1], end)
    return spans


def _restart_index(spans: list[dict[str, list[float]]]) -> int | None:
    """The first chunk whose timestamps jump back: a later recording whose header chunk is lost.

    Appended to this stream, its packets would be clamped onto our last timestamp by the muxer
    and the video lost, while the report called the chunks used (and the caller deletes used
    chunks). Cut there instead, so they are reported as skipped and stay on disk.
    """
    latest: dict[str, float] = {}
    for index, chunk in enumerate(spans):
        if any(low < latest.get(stream, low) - RESTART_SLACK for stream, (low, _) in chunk.items()):
            return index
        for stream, (_, high) in chunk.items():
            latest[stream] = max(latest.get(stream, high), high)
    return None


def _overall_span(spans: list[dict[str, list[float]]]) -> float:
    lows = [low for chunk in spans for low, _ in chunk.values()]
    highs = [high for chunk in spans for _, high in chunk.values()]
    return max(max(highs) - min(lows), 0.0) if lows else 0.0


# --------------------------------------------------------------------------------------------
# Choosing and building the ffmpeg command


def _copy_key(info: ProbeInfo) -> tuple:
    # With stream copy the output header describes the first file only. A later file with
    # another size or codec is dropped or decoded as garbage; one with other parameter sets
    # (extradata) may only play in decoders that follow in-band changes. All must match.
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
            link = temp.new("link", path.suffix[:8])
            link.symlink_to(os.path.abspath(path))
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
        graph.append(_video_chain(i, width, height))
        pads.append(f"[v{i}]")
        if with_audio:
            graph.append(_audio_chain(i, run, last=i == len(runs) - 1))
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


def _video_chain(i: int, width: int, height: int) -> str:
    # Fit inside the target keeping the aspect ratio, then letterbox: nothing is cropped.
    return (f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease"
            f":force_divisible_by=2,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
            f"format=yuv420p[v{i}]")


def _audio_chain(i: int, run: list[_Part], *, last: bool) -> str:
    layout = "aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo"
    if run[0].info.has_audio:
        # async + first_pts keep sound on the picture's clock when an input's audio starts late.
        return f"[{i}:a:0]aresample=48000:async=1:first_pts=0,{layout}[a{i}]"
    # concat pads a short audio segment with silence up to its video's length, except the last
    # one, which must bring its own.
    seconds = max(sum(p.duration for p in run), 0.1) if last else 0.1
    return f"anullsrc=r=48000:cl=stereo,atrim=duration={seconds:.3f},{layout}[a{i}]"


def _run_ffmpeg(ffmpeg: str, args: list[str], output: Path, expected: float,
                report: Callable[[float], None], deadline: _Deadline) -> None:
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats",
           "-progress", "pipe:1", *args, "-y", _url(output)]
    # closing(): if report() raises, ffmpeg is killed now rather than when the generator is
    # garbage-collected.
    with contextlib.closing(_stream_lines(cmd, deadline.remaining())) as lines:
        for line in lines:
            key, _, value = line.partition("=")
            # out_time_ms is also microseconds (a historic misnomer); older builds lack _us.
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
    fsync_dir(final.parent)
    return size, digest.hexdigest()


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
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = _TempFiles(output)
    progress_report = _Progress(progress)
    try:
        parts, skipped = _plan(ordered, ffprobe, deadline, temp)
        if not parts:
            raise MediaError(f"no readable segment among {len(ordered)}: "
                             + "; ".join(f"seq {s['seq']}: {s['reason']}" for s in skipped[:5]))
        result = _produce(parts, temp, ffmpeg, ffprobe, progress_report, deadline)
        final = output.with_suffix("." + result.container)
        size, sha256 = _publish(result.path, final)
    finally:
        temp.cleanup()
    progress_report.done()
    return MergeReport(
        output=final, size=size, duration=round(result.duration, 3), sha256=sha256,
        method=result.method, segments_used=[seq for p in parts for seq in p.seqs],
        skipped=skipped, order_warnings=warnings,
        expected_duration=round(sum(p.duration for p in parts), 3),
        fallback_reason=result.fallback,
    )


@dataclass
class _Result:
    method: str
    container: str
    path: Path
    duration: float
    fallback: str | None = None


def _produce(parts: list[_Part], temp: _TempFiles, ffmpeg: str, ffprobe: str,
             report: _Progress, deadline: _Deadline) -> _Result:
    """Write and verify the merged file: stream copy if the parts allow it, else re-encode."""
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
            return _Result(method, container, path, duration)
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
        after = f" (after {fallback})" if fallback else ""
        raise MediaError(f"reencode failed: {err}{after}") from None
    return _Result("reencode", "mp4", path, duration, fallback)


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
