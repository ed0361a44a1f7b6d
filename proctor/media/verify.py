"""Checking a written output before it is published."""
from __future__ import annotations

from pathlib import Path

from .models import MediaError, MediaTimeout
from .probe import PROBE_TIMEOUT, _measured_duration, probe
from .runner import _Deadline


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
