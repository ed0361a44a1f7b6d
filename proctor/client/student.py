"""One student taking an exam: join, heartbeats, recording into the spool, uploads, finish.

The same ``Student`` runs alone or as one of ``--students N``. Threads of one run: the caller's
(uploads, then the finish), a collector (numbers the segments FFmpeg finishes), heartbeats, and,
when simulating, a chaos thread (network drops, client crashes). A simulated crash ends the run as
SIGKILL would (FFmpeg killed, token forgotten, threads gone) and starts it again on the same spool.
"""
from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .connection import Connection, Offline, Proof, Refused, Unreachable, unreachable_kind
from .recorder import Recorder, RecordingPlan
from .report import Reporter, Stats
from .spool import Segment, Spool

POLL_S = 0.25


class Crash(Exception):
    """A simulated client crash (``--restart-rate``)."""


class Abort(Exception):
    """Stop at once (a second Ctrl-C): what is recorded stays in the spool for the next run."""


class SpoolMismatch(Exception):
    """The spool holds another exam's or student's segments."""


@dataclass(frozen=True)
class Options:
    base: str
    exam_id: int
    plan: RecordingPlan
    duration_s: float | None = None  # None: until Ctrl-C or the session ends
    drop_rate: float = 0.0  # per minute: the network goes away for about drop_s
    drop_s: float = 20.0
    restart_rate: float = 0.0  # per minute: the client crashes and starts again


@dataclass
class Controls:
    """Process-wide: ``stopping`` ends recording and finishes cleanly; ``aborting`` quits now."""

    stopping: threading.Event
    aborting: threading.Event


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Student:
    def __init__(self, name: str, spool_dir: Path, proof: Proof, options: Options, stats: Stats,
                 reporter: Reporter, controls: Controls):
        self.name, self.spool_dir, self.proof, self.options = name, Path(spool_dir), proof, options
        self.stats, self.reporter, self.controls = stats, reporter, controls
        self.status = stats.student(name)
        self.crashed = threading.Event()
        self.session_over = threading.Event()  # the server stopped tracking the session

    def run(self) -> bool:
        """Take the exam to its finish; True once finished with every segment acknowledged."""
        while True:
            self.crashed = threading.Event()
            try:
                return self._run_once()
            except Crash:
                self.status.state = "restarting"
                self.say("simulated crash: starting again on the same spool")
            except Abort:
                self.status.state = "stopped"
                self.say(f"stopped; {self.status.waiting} segments wait in {self.spool_dir}")
                return False

    def say(self, message: str) -> None:
        self.reporter.event(self.name, message)

    def _error(self, kind: str, message: str) -> None:
        self.status.last_error = message
        self.say(message)

    def wait(self, seconds: float) -> None:
        """Sleep, but end the run at once on a crash or a second Ctrl-C."""
        deadline = time.monotonic() + seconds
        while True:
            if self.crashed.is_set():
                raise Crash()
            if self.controls.aborting.is_set():
                raise Abort()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    # --- one run of the client ----------------------------------------------------------------

    def _run_once(self) -> bool:
        spool = Spool(self.spool_dir).open()
        recorder = Recorder(self.options.plan, spool)
        over = threading.Event()  # this run's threads end
        try:
            if spool.state.get("finished"):
                self.status.state, self.status.session_id = "finished", spool.state.get("session_id")
                self.say(f"session {spool.state.get('session_id')} already finished")
                return True
            self._check_spool(spool)
            recovered, discarded = spool.recover()
            if recovered or discarded:
                self.say(f"spool recovered: {recovered} segments numbered, {discarded} half-written dropped")
            conn = Connection(self.options.base, self.options.exam_id, self.proof, self.stats, self.wait, self._error)
            resuming = "session_id" in spool.state
            recorded_all = threading.Event()
            if resuming:  # record at once: the rejoin may have to wait for the old run to count as gone
                self._record(recorder, spool, recorded_all, over)
            self.status.state = "joining"
            joined = conn.join()
            if resuming and joined.session_id != spool.state["session_id"]:
                raise SpoolMismatch(f"the server gave session {joined.session_id}, the spool holds "
                                    f"session {spool.state['session_id']}'s segments")
            spool.update(session_id=joined.session_id, exam_id=self.options.exam_id, base=self.options.base,
                         student_id=self.proof.student_id)
            spool.raise_next_seq(joined.next_seq)
            self.status.session_id, self.status.state = joined.session_id, "recording"
            self.say(f"{'rejoined' if resuming else 'joined'} session {joined.session_id}, next seq {joined.next_seq}")
            if not resuming:
                self._record(recorder, spool, recorded_all, over)
            self._report_missing(conn, spool)
            self._thread(self._heartbeat, conn, over)
            if self.options.drop_rate or self.options.restart_rate:
                self._thread(self._chaos, conn, over)
            self._upload_until_done(conn, spool, recorded_all)
            if failure := recorder.failure():
                self._error("recorder", f"recording failed, the session is not finished: {failure}")
                return False
            self._finish(conn, spool)
            return True
        finally:
            over.set()
            recorder.kill()
            spool.close()

    def _check_spool(self, spool: Spool) -> None:
        for key, mine in (("exam_id", self.options.exam_id), ("student_id", self.proof.student_id)):
            held = spool.state.get(key)
            if held not in (None, mine) and mine:
                raise SpoolMismatch(f"{self.spool_dir} belongs to {key} {held}, not {mine}: use another --spool")

    def _record(self, recorder: Recorder, spool: Spool, recorded_all: threading.Event, over: threading.Event) -> None:
        """Start FFmpeg for what is left to record (nothing when --duration is reached) and the
        thread that numbers its segments."""
        left = None
        if self.options.duration_s is not None:
            left = self.options.duration_s - spool.state.get("recorded_s", 0.0)
        if left is None or left >= 0.5:
            recorder.start(left)
        self.status.recorded = spool.state.get("recorded", 0)
        self._thread(self._collect, recorder, spool, recorded_all, over)

    def _thread(self, target, *args) -> None:
        name = f"{self.name}-{target.__name__}"
        threading.Thread(target=self._guarded, args=(target, *args), daemon=True, name=name).start()

    def _guarded(self, target, *args) -> None:
        try:
            target(*args)
        except (Crash, Abort):
            pass  # the run's own thread sees the same and ends the run
        except Refused as err:  # a rejoin refused for good (the exam completed): the uploads will see it too
            self._error(target.__name__.strip("_"), str(err))

    # --- the threads --------------------------------------------------------------------------

    def _collect(self, recorder: Recorder, spool: Spool, recorded_all: threading.Event, over: threading.Event):
        """Number finished segments as FFmpeg closes them; stop FFmpeg when asked to stop."""
        stopped = False
        while not over.is_set():
            running = recorder.running()
            if not stopped and running and (self.controls.stopping.is_set() or self.session_over.is_set()):
                recorder.stop()
                stopped = True
            if recorder.collect():
                self.status.recorded = spool.state.get("recorded", 0)
                self.status.waiting = len(spool.segments())
            if not running:  # collected once more after FFmpeg ended: nothing more will come
                recorded_all.set()
                return
            over.wait(POLL_S)

    def _heartbeat(self, conn: Connection, over: threading.Event) -> None:
        interval = conn.joined.heartbeat_interval_s
        path = f"/api/sessions/{conn.session_id}/heartbeat"
        while not over.wait(interval * random.uniform(0.8, 1.2)):  # jitter: a hall does not beat in step
            seen, began = conn.joined, time.monotonic()
            try:
                r = conn.send("POST", path)
            except Unreachable as err:
                if not isinstance(err, Offline):  # a real attempt, unanswered
                    self.stats.attempt("heartbeat")
                self.stats.error(unreachable_kind(err))
                self.status.last_error = f"heartbeat: {err}"
                continue
            self.stats.attempt("heartbeat")
            if r.status_code == 200:
                self.stats.count("heartbeats")
                self.stats.latency("heartbeat", time.monotonic() - began)
                if not r.json().get("tracked", True):  # finished elsewhere (the teacher): stop recording
                    self.session_over.set()
            elif r.status_code == 401:
                conn.rejoin(seen)
            else:
                self.stats.error(f"http_{r.status_code}")
                self.status.last_error = f"heartbeat: {r.status_code}"

    def _chaos(self, conn: Connection, over: threading.Event) -> None:
        """Once a second: a network drop with probability drop_rate/60, a crash with restart_rate/60."""
        while not over.wait(1.0):
            now = time.monotonic()
            if now >= conn.offline_until and random.random() < self.options.drop_rate / 60:
                conn.offline_until = now + self.options.drop_s * random.uniform(0.5, 1.5)
                self.say(f"network drop (simulated) for {conn.offline_until - now:.0f} s; recording goes on")
            if random.random() < self.options.restart_rate / 60:
                self.crashed.set()
                return

    # --- uploads and the finish ---------------------------------------------------------------

    def _report_missing(self, conn: Connection, spool: Spool) -> None:
        """Say which seqs the server lacks that this spool does not hold (lost elsewhere)."""
        view = conn.call("session_view", "GET", f"/api/sessions/{conn.session_id}", ok=(200,)).json()
        held = {s.seq for s in spool.segments()}
        for low, high in view.get("missing", []):
            lost = [seq for seq in range(low, high + 1) if seq not in held]
            if lost:
                self.stats.error("missing_not_in_spool")
                self._error("missing", f"the server misses seqs {lost[0]}..{lost[-1]}, which this spool does not hold")

    def _upload_until_done(self, conn: Connection, spool: Spool, recorded_all: threading.Event) -> None:
        while True:
            waiting = spool.segments()
            self.status.waiting = len(waiting)
            if waiting:
                self._upload(conn, spool, waiting[0])
            elif recorded_all.is_set() and not spool.segments():
                return
            else:
                self.wait(POLL_S)

    def _upload(self, conn: Connection, spool: Spool, segment: Segment) -> None:
        headers = {"Content-Type": segment.media_type, "X-Content-SHA256": sha256_of(segment.path),
                   "X-Captured-At": str(segment.captured_ms)}
        with open(segment.path, "rb") as body:
            try:
                conn.call("upload", "PUT", f"/api/sessions/{conn.session_id}/segments/{segment.seq}", ok=(200, 201),
                          rewind=lambda: body.seek(0), data=body, headers=headers)
            except Refused as err:
                spool.reject(segment)
                self._error("upload", f"seq {segment.seq} refused for good ({err}); kept in {spool.rejected}")
                return
        spool.acknowledged(segment)
        self.stats.count("acknowledged")
        self.status.uploaded += 1

    def _finish(self, conn: Connection, spool: Spool) -> None:
        last_seq = spool.next_seq() - 1
        self.status.state = "finishing"
        try:
            conn.call("finish", "POST", f"/api/sessions/{conn.session_id}/finish", ok=(202,),
                      json={"last_seq": last_seq} if last_seq >= 0 else {})
        except Refused as err:
            if err.code != "session_finished":
                raise
            self.say("the session was already finished (by the teacher or the exam's end)")
        spool.update(finished=True)
        self.status.state = "finished"
        self.say(f"finished session {conn.session_id}: {spool.state.get('recorded', 0)} segments, "
                 f"{spool.state.get('recorded_s', 0.0):.1f} s recorded")
