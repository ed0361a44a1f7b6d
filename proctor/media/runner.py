"""Running ffmpeg and ffprobe: guarded inputs, deadlines, stderr tails and progress.

Uploaded files are hostile input for a complex decoder: ffmpeg gets argument lists (never a
shell), ``file:`` URLs only (``-protocol_whitelist file``), only the three container demuxers we
accept (``-format_whitelist``), and a deadline after which it is killed. On Linux ffmpeg also
dies with the worker process that started it (``PR_SET_PDEATHSIG``), so a SIGKILLed Celery
worker leaves no orphan encoding on; its ``.tmp-<output stem>-*`` files remain for a sweeper.
An ffmpeg that fails because the disk is full raises OSError(ENOSPC), not MediaError: the input is
fine and the merge is worth retrying once there is room.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import functools
import math
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .models import MediaError, MediaTimeout

# Demuxers an upload may be opened with; everything else (HLS playlists, images, raw streams...)
# is refused before a parser sees it.
DEMUXERS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpegts")
STDERR_TAIL = 30
# How ffmpeg reports a write that failed for want of space (its stderr ends in strerror()).
_NO_SPACE = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


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


class _CommandFailed(MediaError):
    """ffmpeg or ffprobe exited non-zero; the message is the last line of its stderr."""


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
        if any(text in line for line in tail for text in _NO_SPACE):
            raise OSError(errno.ENOSPC, f"{Path(cmd[0]).name}: {_last_error(tail)}")
        raise _CommandFailed(_last_error(tail))


def _drain(pipe, tail: collections.deque) -> None:
    with pipe:
        for raw in pipe:
            tail.append(raw.decode("utf-8", "replace"))


def _float_or_none(value) -> float | None:
    """A finite number from ffmpeg's or ffprobe's output, or None for a missing or odd value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
