"""Students in one process: each ``Student`` in a thread of its own (one student is a fleet of one),
Ctrl-C handled in the main thread, the summary printed at the end."""
from __future__ import annotations

import signal
import threading

from .connection import Proof, Refused
from .recorder import SourceError
from .report import Reporter
from .spool import SpoolBusy
from .student import Controls, Options, SpoolMismatch, Student

# A student that cannot go on: told to the person, the others go on.
FATAL = (Refused, SourceError, SpoolBusy, SpoolMismatch, OSError)


def handle_interrupts(controls: Controls, reporter: Reporter) -> None:
    """First Ctrl-C (or SIGTERM): stop recording, send what is recorded, finish. Second: quit now,
    leaving the spool for the next run."""

    def interrupted(signum, frame):
        if controls.stopping.is_set():
            controls.aborting.set()
            reporter.event("client", "stopping now; what is recorded stays in the spool")
        else:
            controls.stopping.set()
            reporter.event("client", "stopping: sending what is recorded, then finishing (Ctrl-C again: quit now)")

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)


def run_fleet(proofs: list[tuple[str, Proof, str]], options: Options, reporter: Reporter, controls: Controls) -> bool:
    """Run every (name, proof, spool dir) student to its end; True when all finished."""
    results: dict[str, bool] = {}

    def take_exam(student: Student) -> None:
        try:
            results[student.name] = student.run()
        except FATAL as err:
            student.status.state, student.status.last_error = "failed", str(err)
            reporter.event(student.name, f"cannot go on: {err}")
            results[student.name] = False

    threads = []
    for name, proof, spool_dir in proofs:
        student = Student(name, spool_dir, proof, options, reporter.stats, reporter, controls)
        thread = threading.Thread(target=take_exam, args=(student,), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        while thread.is_alive():  # join in short steps: signals reach the main thread between them
            thread.join(0.2)
    return len(results) == len(proofs) and all(results.values())
