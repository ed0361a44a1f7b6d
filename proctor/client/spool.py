"""The spool directory: every recorded segment stays here, on disk, until the server acknowledged it.

Layout::

    state.json                   session id, exam, student, the next seq to give, seconds recorded
    lock                         held (flock) by the one client using this spool
    pending/<seq>-<ms>.<ext>     recorded, numbered, not yet acknowledged (ms: captured at, epoch)
    rejected/                    segments the server refused for good (kept for a person to look at)
    rec-<run>/                   FFmpeg's output of one client run and its list of finished segments

A segment is numbered when it moves from ``rec-<run>`` to ``pending`` (a rename, after fsync), and
the state is written after it (a new file renamed over the old): a crash between the two leaves the
seq in the file name, so the next seq is the larger of the state's and the highest pending one.
The session token is never written here: a run after a crash joins again and gets a new one.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

PENDING_NAME = re.compile(r"^(\d{6})-(\d+)\.(mp4|webm)$")
LIST_NAME = "segments.csv"
STARTED_NAME = "started_ms"


class SpoolBusy(Exception):
    """Another client is using this spool directory."""


@dataclass(frozen=True)
class Segment:
    seq: int
    captured_ms: int
    path: Path

    @property
    def media_type(self) -> str:
        return "video/webm" if self.path.suffix == ".webm" else "video/mp4"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.pending = self.root / "pending"
        self.rejected = self.root / "rejected"
        self._lock = threading.Lock()
        self._lock_file = None
        self.state: dict = {}

    # --- ownership and state ------------------------------------------------------------------

    def open(self) -> "Spool":
        """Take the spool (one client at a time; a killed client's lock goes with its process)."""
        for d in (self.root, self.pending, self.rejected):
            d.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.root / "lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"{self.root} is in use by another client") from None
        path = self.root / "state.json"
        self.state = json.loads(path.read_text()) if path.exists() else {}
        return self

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def update(self, **changes) -> None:
        with self._lock:
            self.state.update(changes)
            self._write_state()

    def _write_state(self) -> None:
        tmp = self.root / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "state.json")
        fsync_dir(self.root)

    def next_seq(self) -> int:
        """The seq the next recorded segment gets (see the module docstring for why the maximum)."""
        held = [s.seq for s in self.segments()]
        return max([self.state.get("next_seq", 0), *(s + 1 for s in held)])

    def raise_next_seq(self, server_next: int) -> None:
        """The server holds seqs up to ``server_next`` - 1 (from another spool, or acknowledged)."""
        with self._lock:
            if server_next > self.next_seq():
                self.state["next_seq"] = server_next
                self._write_state()

    # --- segments -----------------------------------------------------------------------------

    def new_run_dir(self) -> Path:
        with self._lock:
            run = self.state.get("runs", 0) + 1
            self.state["runs"] = run
            self._write_state()
        path = self.root / f"rec-{run:04d}"
        path.mkdir()
        return path

    def commit(self, recorded: Path, captured_ms: int, seconds: float) -> Segment:
        """Number a finished segment and move it to pending (durably, before the state says so)."""
        fsync_file(recorded)
        with self._lock:
            seq = self.next_seq()
            target = self.pending / f"{seq:06d}-{captured_ms}{recorded.suffix}"
            os.replace(recorded, target)
            fsync_dir(self.pending)
            self.state["next_seq"] = seq + 1
            self.state["recorded_s"] = round(self.state.get("recorded_s", 0.0) + seconds, 3)
            self.state["recorded"] = self.state.get("recorded", 0) + 1
            self._write_state()
        return Segment(seq, captured_ms, target)

    def segments(self) -> list[Segment]:
        found = []
        for path in self.pending.iterdir():
            if m := PENDING_NAME.match(path.name):
                found.append(Segment(int(m.group(1)), int(m.group(2)), path))
        return sorted(found, key=lambda s: s.seq)

    def acknowledged(self, segment: Segment) -> None:
        segment.path.unlink(missing_ok=True)
        fsync_dir(self.pending)

    def reject(self, segment: Segment) -> None:
        os.replace(segment.path, self.rejected / segment.path.name)

    def collect(self, run_dir: Path) -> list[Segment]:
        """Number every segment FFmpeg finished in ``run_dir`` and has not been moved yet."""
        started_ms = run_started_ms(run_dir)
        return [
            self.commit(run_dir / name, started_ms + int(start * 1000), end - start)
            for name, start, end in finished_segments(run_dir)
            if (run_dir / name).exists()
        ]

    def recover(self) -> tuple[int, int]:
        """After a crash: number the segments earlier runs finished but did not move, drop what
        they left half-written (FFmpeg had not closed it: not a playable segment), and remove
        their directories. Returns (segments recovered, files discarded)."""
        recovered = discarded = 0
        for run_dir in sorted(self.root.glob("rec-*")):
            recovered += len(self.collect(run_dir))
            discarded += sum(1 for p in run_dir.iterdir() if p.suffix in (".mp4", ".webm"))
            shutil.rmtree(run_dir)
        return recovered, discarded


def mark_run_started(run_dir: Path, started_ms: int) -> None:
    (run_dir / STARTED_NAME).write_text(str(started_ms))


def run_started_ms(run_dir: Path) -> int:
    """When the run's FFmpeg started (epoch ms): segment times in its list count from there."""
    try:
        return int((run_dir / STARTED_NAME).read_text())
    except (OSError, ValueError):
        return int(run_dir.stat().st_mtime * 1000)


def finished_segments(run_dir: Path) -> list[tuple[str, float, float]]:
    """FFmpeg's list of the segments it finished: (file name, start s, end s). FFmpeg adds a line
    when it closes a segment; a line without its newline was still being written and is skipped."""
    try:
        text = (run_dir / LIST_NAME).read_text()
    except FileNotFoundError:
        return []
    rows = []
    for row in csv.reader(text.split("\n")[:-1]):
        try:
            rows.append((row[0], float(row[1]), float(row[2])))
        except (IndexError, ValueError):
            continue
    return rows
