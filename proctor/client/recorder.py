"""Recording with FFmpeg: a source cut by FFmpeg's segment muxer into self-contained files.

Each segment is a complete MP4 (H.264) or WebM (VP8) file whose timestamps start at zero, cut on a
forced key frame every ``segment_s`` seconds, so the server can join them by stream copy. FFmpeg
adds a line to its segment list when it closes a segment: only listed segments are numbered and
moved to the spool's pending directory (``Spool.collect``).
"""
from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .spool import LIST_NAME, Segment, Spool, mark_run_started

ENCODERS = {
    "mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"],
    "webm": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k", "-pix_fmt", "yuv420p"],
}
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class SourceError(ValueError):
    """A --source that names nothing FFmpeg can record."""


@dataclass(frozen=True)
class RecordingPlan:
    source: str  # "testsrc", "screen" or "file:PATH"
    segment_s: float = 10.0
    container: str = "mp4"
    size: str = "640x360"
    fps: int = 10
    display: str = ""  # the X11 display, for "screen"

    def input_args(self, offset_s: float) -> list[str]:
        """FFmpeg's input options; ``offset_s``: a file source resumes where the spool left off."""
        if self.source == "testsrc":
            return ["-re", "-f", "lavfi", "-i", f"testsrc=size={self.size}:rate={self.fps}"]
        if self.source == "screen":
            if not self.display:
                raise SourceError("--source screen needs an X11 display (DISPLAY is not set)")
            return ["-f", "x11grab", "-framerate", str(self.fps), "-draw_mouse", "1", "-i", self.display]
        if self.source.startswith("file:"):
            path = Path(self.source.removeprefix("file:"))
            if not path.is_file():
                raise SourceError(f"--source {self.source}: no such file")
            return ["-re", "-ss", f"{offset_s:.3f}", "-i", str(path)]
        raise SourceError(f"--source {self.source!r}: use testsrc, screen or file:PATH")

    def command(self, run_dir: Path, offset_s: float, duration_s: float | None) -> list[str]:
        limit = ["-t", f"{duration_s:.3f}"] if duration_s is not None else []
        # Even dimensions: H.264 in yuv420p needs them, and a screen may have odd ones.
        scale = ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"] if self.source != "testsrc" else []
        return [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
            *self.input_args(offset_s), *limit, "-an", *scale, *ENCODERS[self.container],
            "-force_key_frames", f"expr:gte(t,n_forced*{self.segment_s})",
            "-f", "segment", "-segment_time", str(self.segment_s), "-reset_timestamps", "1",
            "-segment_format", self.container, "-segment_list", str(run_dir / LIST_NAME),
            "-segment_list_type", "csv", str(run_dir / f"seg%06d.{self.container}"),
        ]


def _die_with_the_client() -> None:
    """In FFmpeg before exec: killed when the client's thread that started it dies (a client
    killed with SIGKILL must not leave an FFmpeg writing into the spool of its successor)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Recorder:
    """One FFmpeg run into a fresh ``rec-<run>`` directory of the spool."""

    def __init__(self, plan: RecordingPlan, spool: Spool):
        self.plan, self.spool = plan, spool
        self.proc: subprocess.Popen | None = None
        self.run_dir: Path | None = None

    def start(self, duration_s: float | None) -> None:
        self.run_dir = self.spool.new_run_dir()
        command = self.plan.command(self.run_dir, self.spool.state.get("recorded_s", 0.0), duration_s)
        mark_run_started(self.run_dir, int(time.time() * 1000))
        with open(self.run_dir / "ffmpeg.log", "wb") as log:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_the_client)

    def collect(self) -> list[Segment]:
        """Move the segments FFmpeg finished since the last call to pending."""
        return self.spool.collect(self.run_dir) if self.run_dir else []

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop recording cleanly: FFmpeg closes the segment it is writing (SIGINT is its 'q')."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def failure(self) -> str | None:
        """Why FFmpeg ended badly, once it has ended (None while running or after a clean end)."""
        if self.proc is None or self.proc.poll() in (None, 0, 255):  # 255: ended by our SIGINT
            return None
        log = (self.run_dir / "ffmpeg.log").read_text(errors="replace").strip().splitlines()
        return f"ffmpeg exited with {self.proc.returncode}: " + (log[-1] if log else "no message")
