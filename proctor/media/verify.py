"""Checking a written output before it is published."""
from __future__ import annotations

from pathlib import Path

from .models import MediaError, MediaTimeout, ProbeInfo
from .probe import PROBE_TIMEOUT, _measured_duration, probe
from .quick_probe import quick_probe
from .runner import _Deadline


def _verify(path: Path, expected: float, need_audio: bool, ffprobe: str,
            deadline: _Deadline) -> float:
    """The output's duration, or MediaError saying what is wrong with it."""
    info = _read_back(path, ffprobe, deadline)
    if info.video_codec is None:
        raise MediaError("output has no video stream")
    if need_audio and not info.has_audio:
        raise MediaError("output lost the audio stream")
    duration = _measured_duration(path, info, ffprobe, deadline)
    tolerance = max(0.02 * expected, 1.0)
    if abs(duration - expected) > tolerance:
        raise MediaError(f"output lasts {duration:.2f}s, inputs {expected:.2f}s")
    return duration


def _read_back(path: Path, ffprobe: str, deadline: _Deadline) -> ProbeInfo:
    """What ffprobe says of the written file, read in-process first (``quick_probe``: FFmpeg's
    libraries, already loaded in the merge worker) instead of paying ffprobe's ~75 ms start-up at
    the end of every merge; ffprobe itself when that cannot say or cannot read the file, so an
    output is never called unreadable but on ffprobe's word."""
    try:
        info = quick_probe(path, timeout=deadline.remaining(PROBE_TIMEOUT))
    except MediaError:
        info = None
    if info is not None:
        return info
    try:
        return probe(path, ffprobe=ffprobe, timeout=deadline.remaining(PROBE_TIMEOUT))
    except MediaTimeout:
        raise
    except MediaError as err:
        raise MediaError(f"output unreadable: {err}") from None
