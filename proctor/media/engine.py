"""Merging: turn an ordered list of uploaded recording segments into one verified video.

How a merge goes (``merge_segments``):

1. Segments are sorted by ``seq``; ``captured_at`` values that contradict that order are reported
   in ``order_warnings`` but do not change it (the client's clock is less trustworthy than its
   counter).
2. Every segment is probed with ffprobe; the container is never guessed from the file name.
   A caller that kept ffprobe's description of a segment from when it arrived passes it as
   ``Segment.probe`` and that segment is not probed again: the server probes each upload in the
   merge worker while the exam runs, so that at the exam's end a merge is FFmpeg plus
   verification rather than one ffprobe start-up per segment first (``MergeReport.plan`` says
   which happened, ``probes_run`` how many ffprobes the plan ran). The descriptions are trusted
   only as far as the result verifies: if a merge planned from them fails, it is planned again
   from fresh probes (``plan == "probed again"``), so a file changed since is skipped as usual.
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

4. The result is written to a ``.tmp-`` file beside the output, verified as ffprobe reads it (a
   video stream, audio if the inputs had audio, a duration within max(2 %, 1 s) of the inputs';
   read in-process first, by ffprobe itself when that reading fails: ``verify``),
   fsynced and renamed into place. A copy method that fails or does not verify is retried once
   as a re-encode.

Known limits: a headerless file of random bytes *inside* a MediaRecorder stream cannot be told
from a real chunk; it is appended (the demuxer resyncs past it) and counted as used. A resolution
change inside one MediaRecorder stream is copied as it is. A self-contained file whose index
promises more media than it holds fails verification, and with it the merge (MediaError).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .. import storage
from .args import _copy_args, _copy_container, _reencode_args
from .folders import order_directory
from .models import MediaError, MediaTimeout, MergeReport, Segment
from .plan import _order, _Part, _plan
from .runner import _Deadline, _Progress, _run_ffmpeg
from .scratch import _TempFiles
from .verify import _verify


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
    storage.make_dirs(output.parent)
    temp = _TempFiles(output)
    progress_report = _Progress(progress)
    plan = _plan_kind(ordered)
    try:
        try:
            parts, skipped, result = _plan_and_produce(ordered, temp, ffmpeg, ffprobe,
                                                       progress_report, deadline)
        except MediaTimeout:
            raise
        except MediaError:
            if all(seg.probe is None for seg in ordered):
                raise
            # The descriptions given may not fit the files any more (bytes changed on disk):
            # plan again from what ffprobe says now, which skips what it cannot read.
            plan = "probed again"
            ordered = [replace(seg, probe=None) for seg in ordered]
            parts, skipped, result = _plan_and_produce(ordered, temp, ffmpeg, ffprobe,
                                                       progress_report, deadline)
        final = output.with_suffix("." + result.container)
        published = storage.stage_file(result.path)
        storage.replace(published, final)
    finally:
        temp.cleanup()
    progress_report.done()
    return MergeReport(
        output=final, size=published.size, duration=round(result.duration, 3),
        sha256=published.sha256, method=result.method,
        segments_used=[seq for p in parts for seq in p.seqs],
        skipped=skipped, order_warnings=warnings,
        expected_duration=round(sum(p.duration for p in parts), 3),
        fallback_reason=result.fallback,
        plan=plan, probes_run=sum(seg.probe is None for seg in ordered),
    )


def _plan_kind(ordered: list[Segment]) -> str:
    return "stored" if all(seg.probe is not None for seg in ordered) else "probed"


def _plan_and_produce(ordered: list[Segment], temp: _TempFiles, ffmpeg: str, ffprobe: str,
                      report: _Progress, deadline: _Deadline) -> tuple[list[_Part], list[dict], _Result]:
    parts, skipped = _plan(ordered, ffprobe, deadline, temp)
    if not parts:
        raise MediaError(f"no readable segment among {len(ordered)}: "
                         + "; ".join(f"seq {s['seq']}: {s['reason']}" for s in skipped[:5]))
    return parts, skipped, _produce(parts, temp, ffmpeg, ffprobe, report, deadline)


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
