"""Planning a merge: which segments' bytes form which part, and how long each part lasts."""
from __future__ import annotations

import bisect
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from .. import filetypes
from .models import MediaError, MediaTimeout, ProbeInfo, Segment
from .probe import PROBE_TIMEOUT, _measured_duration, _packet_span, _scan_packets, probe
from .runner import _Deadline
from .scratch import _TempFiles

COPY_CHUNK = 1024 * 1024  # buffer for joining chunk files
# ffprobes run at once while planning a merge: enough to keep the cores busy while each waits on
# its start-up and reads, few enough for a merge worker of several processes.
PROBES_AT_ONCE = max(2, min(8, 2 * (os.cpu_count() or 1)))
# Within one stream, packets in file order are in timestamp order give or take B-frame
# reordering; a jump back further than this means a different recording.
RESTART_SLACK = 1.0
RESTART_REASON = ("timestamps restart: continuation chunk of a later recording whose header "
                  "chunk is missing")


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
    for seg, (info, reason) in zip(ordered, _probe_all(ordered, ffprobe, deadline)):
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


def _probe_all(ordered: list[Segment], ffprobe: str,
               deadline: _Deadline) -> list[tuple[ProbeInfo | None, str]]:
    """What each segment holds: the description the caller kept from its arrival, else
    ``_probe_segment``, several ffprobes at once (most of a probe's time is ffprobe starting up;
    one after another they held FFmpeg back for seconds on a long exam)."""
    unknown = [seg for seg in ordered if seg.probe is None]
    probed: dict[int, tuple[ProbeInfo | None, str]] = {}
    if unknown:
        with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(unknown))) as pool:
            found = pool.map(lambda seg: _probe_segment(seg, ffprobe, deadline), unknown)
            probed = dict(zip((seg.seq for seg in unknown), found))
    return [probed[seg.seq] if seg.probe is None else _known_segment(seg) for seg in ordered]


def _known_segment(seg: Segment) -> tuple[ProbeInfo | None, str]:
    unusable = _unusable_file(seg.path)
    if unusable:
        return None, unusable
    return _with_video(seg.probe)


def _with_video(info: ProbeInfo) -> tuple[ProbeInfo | None, str]:
    if info.video_codec is None:
        return None, "no video stream"
    return info, ""


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
    return _with_video(info)


def _could_continue(path: Path) -> bool:
    """Might this unreadable file be the middle of a byte stream (no container header)?"""
    if _unusable_file(path):
        return False
    with open(path, "rb") as f:
        head = f.read(filetypes.HEAD_BYTES)
    return not filetypes.starts_container(head)


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
                shutil.copyfileobj(src, out, COPY_CHUNK)
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
