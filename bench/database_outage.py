"""Benchmark: what a MariaDB outage looks like from the API.

Usage: .venv/bin/python bench/database_outage.py [--rounds R] [--calls N]

Starts a private MariaDB (mariadbd on a free port, a temporary data directory), a private Redis
and a real Gunicorn on them, as the outage test does, with a token-API student and a desktop seat.
Then, R times:

- MariaDB stopped: the time the API takes to answer 503 to an upload (token API), a seat heartbeat
  and a teacher's read (N calls each), and a token-API heartbeat (answered from Redis);
- MariaDB started again: the time from its first accepted connection to the API's first 200;
- MariaDB frozen (SIGSTOP, the process alive but silent): one answer of each, bounded by the
  timeouts of ``proctor.db``; then it is thawed (SIGCONT).

Prints medians and maxima in milliseconds. Needs mariadb-install-db, mariadbd and redis-server.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import Api, HttpTransport, Seat, install_environment, start_gunicorn  # noqa: E402


def timed(call) -> tuple[float, int]:
    started = time.monotonic()
    status = call().status_code
    return (time.monotonic() - started) * 1000, status


class Stack:
    """The private MariaDB, Redis and Gunicorn, with one exam, a student and a seat."""

    def __init__(self, tmp: Path):
        from tests.test_database_outage import PrivateMariaDB
        from tests.test_faults import PrivateRedis

        self.db = PrivateMariaDB(tmp / "mariadb")
        self.db.install()
        self.db.start()
        self.db.create_database()
        self.redis = PrivateRedis()
        self.redis.start()
        self.web, base = start_gunicorn("bench-db-outage.log", DATABASE_URL=self.db.url, REDIS_URL=self.redis.url,
                                        PROCTOR_DATA_DIR=str(tmp / "data"))
        self.api = Api(HttpTransport(base))
        self.seat = Seat(self.api, "127.0.0.51", "bench-seat", "Bench Seat")
        exam = self.api.create_exam(roster=["bench-student", {"student_id": "bench-seat", "name": "Bench Seat"}])
        self.student = self.api.join(exam["id"], "bench-student")
        assert self.seat.login()["status"] == "success"
        self.calls = {
            "upload (503)": lambda: self.api.upload(self.student, 0, b"\x00" * 1024),
            "seat heartbeat (503)": self.seat.heartbeat,
            "teacher read (503)": lambda: self.api.get(f"/api/sessions/{self.student['session_id']}", "teacher"),
            "token heartbeat (200)": lambda: self.api.heartbeat(self.student),
        }

    def close(self) -> None:
        self.web.stop()
        self.redis.stop()
        self.db.stop()


def answers_while_down(stack: Stack, calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in stack.calls}
    for _ in range(calls):
        for name, call in stack.calls.items():
            ms, status = timed(call)
            assert status == int(name[-4:-1]), (name, status)
            times[name].append(ms)
    return times


def recovery_ms(stack: Stack) -> float:
    """From MariaDB's first accepted connection to the API's first 200 on a database read."""
    import pymysql

    first: dict[str, float] = {}
    done = threading.Event()

    def poll(name: str, ok) -> None:
        while not done.is_set():
            try:
                if ok():
                    first[name] = time.monotonic()
                    return
            except Exception:  # noqa: BLE001 - still down
                pass
            time.sleep(0.005)

    pollers = [
        threading.Thread(target=poll, args=("db", lambda: pymysql.connect(
            host="127.0.0.1", port=stack.db.port, user="root", connect_timeout=1).close() or True)),
        threading.Thread(target=poll, args=("api", lambda: stack.calls["teacher read (503)"]().status_code == 200)),
    ]
    for thread in pollers:
        thread.start()
    stack.db.start()
    for thread in pollers:
        thread.join(timeout=60)
    done.set()
    return (first["api"] - first["db"]) * 1000


def answers_while_frozen(stack: Stack) -> dict[str, float]:
    pid = stack.db.proc.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        return {name: timed(call)[0] for name, call in stack.calls.items()}
    finally:
        os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    install_environment()  # the stack's directories; its database and Redis are private
    from proctor import db

    down: dict[str, list[float]] = {}
    frozen: dict[str, list[float]] = {}
    recovery: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-db-outage-") as tmp:
        stack = Stack(Path(tmp))
        try:
            for _ in range(args.rounds):
                stack.db.stop()
                for name, times in answers_while_down(stack, args.calls).items():
                    down.setdefault(name, []).extend(times)
                recovery.append(recovery_ms(stack))
                for name, ms in answers_while_frozen(stack).items():
                    frozen.setdefault(name, []).append(ms)
        finally:
            stack.close()

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.rounds} rounds; timeouts: connect {db.CONNECT_TIMEOUT_S} s, read/write {db.READ_TIMEOUT_S} s, "
          f"pool {db.POOL_TIMEOUT_S} s")
    print(f"{'MariaDB stopped':<28}{'median ms':>12}{'max ms':>12}")
    for name, times in down.items():
        print(f"{name:<28}{statistics.median(times):>12.1f}{max(times):>12.1f}")
    print(f"{'MariaDB frozen (SIGSTOP)':<28}{'median ms':>12}{'max ms':>12}")
    for name, times in frozen.items():
        print(f"{name:<28}{statistics.median(times):>12.1f}{max(times):>12.1f}")
    print(f"{'back: first 200 after':<28}{statistics.median(recovery):>12.1f}{max(recovery):>12.1f}"
          "   (from MariaDB's first accepted connection)")


if __name__ == "__main__":
    main()
