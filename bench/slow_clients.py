"""Benchmark: other students' heartbeats while one address holds many idle or trickling connections.

Usage: .venv/bin/python bench/slow_clients.py [--idle N] [--trickle T] [--trickle-uploads U] [--honest M]
                                              [--seconds S] [--warmup S] [--settle S] [--repeat R]
                                              [--workers CLASS,CLASS] [--json]

For each worker class (default: gthread, the former default, and proctor.serving.PacedGeventWorker,
the chosen one), in the same run and interleaved, it starts the real Gunicorn with the project's
gunicorn_config.py (``PROCTOR_WEB_WORKER_CLASS`` set in its environment, everything else the
defaults), then measures, with and without the attack:

- the attack, from 127.0.0.2 in a process of its own: N connections that send the headers of a
  ``POST /api/login`` announcing a 4 KiB body and then nothing, and T that send that body one byte
  a second, and U that PUT a segment of a session of their own (a valid token) announcing 5 MiB
  and sending 1 KiB a second; each is opened again as soon as the server closes it;
- M honest clients from other addresses, half of them students heartbeating through the token API
  (``POST /api/sessions/<id>/heartbeat`` with their Bearer token), half desktop seats
  (``POST /api/heartbeat``), each one heartbeat after another with a 10 s client timeout, one
  student uploading a screenshot a second and one uploading 1 MiB segments one after another
  (their throughput is measured).

Prints, per worker class and load, the medians over R runs of the heartbeat latency p50 and p99
(a heartbeat that failed or timed out counts as 10 s), the share of failed heartbeats and of
uploads that failed, the honest segment uploads' MB/s, the attack's connections still open at the
end of the window, and the machine (nproc, CPU model); ``--json`` prints those medians as JSON
(bench/suite.py's slow-clients row).

Uses a temporary SQLite database unless DATABASE_URL is set, and Redis db 13 of the local server
(BENCH_REDIS_URL to change) with its own key prefix. Needs a soft limit of open files above N + T
(it raises its own up to the hard limit).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.suite import segment_file  # noqa: E402 - after the path
from tests.helpers import (  # noqa: E402
    ADMIN_TOKEN, BIN, RUN_DIR, Api, HttpTransport, Seat, png_image, start_gunicorn, unique,
)

CLIENT_TIMEOUT_S = 10.0
BEAT_EVERY_S = 0.2  # each honest client's pace: 20 clients make 100 heartbeats a second
ATTACK_SOURCE = "127.0.0.2"
ANNOUNCED_BODY = 4096
TRICKLED_SEGMENT = 5 * 1024 * 1024  # what a trickling upload announces
TRICKLE_CHUNK = 1024  # sent each second: 1 KiB/s
HONEST_SEGMENT_MIB = 1
CHOSEN = "proctor.serving.PacedGeventWorker"


# --- the attack (a process of its own) ------------------------------------------------------------


def login_head(host: str) -> str:
    return (f"POST /api/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {ANNOUNCED_BODY}\r\n\r\n")


def upload_head(host: str, session: dict) -> str:
    """A segment PUT of ``session``; ``{n}`` (the connection's attempt) makes each one a new seq."""
    return (f"PUT /api/sessions/{session['session_id']}/segments/{{n}} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {session['token']}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {TRICKLED_SEGMENT}\r\n\r\n")


async def _hold(host: str, port: int, head: str, chunk: bytes, open_now, stop: asyncio.Event) -> None:
    """One attacking connection sending ``head`` (``{n}``: how many it sent before), then
    ``chunk`` each second (nothing when empty), opened again whenever the server closes it."""
    attempt = 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACK_SOURCE, 0))
        except OSError:
            await asyncio.sleep(0.2)
            continue
        with open_now.get_lock():
            open_now.value += 1
        try:
            writer.write(head.format(n=attempt).encode())
            attempt += 1
            await writer.drain()
            while not stop.is_set():
                if chunk:
                    writer.write(chunk)
                    await writer.drain()
                try:  # anything from the server (an answer, or the close) ends this connection
                    if await asyncio.wait_for(reader.read(65536), timeout=1.0) is not None:
                        break
                except asyncio.TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            with open_now.get_lock():
                open_now.value -= 1
            writer.close()
        await asyncio.sleep(0.1)


def attack(host: str, port: int, plan: list[tuple[str, bytes]], open_now, stop_flag) -> None:
    """Every (head, chunk) of ``plan`` held as a connection of its own until ``stop_flag``."""
    async def main():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_hold(host, port, head, chunk, open_now, stop)) for head, chunk in plan]
        while not stop_flag.is_set():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


# --- honest clients -------------------------------------------------------------------------------


class BoundedTransport(HttpTransport):
    """HTTP with the benchmark's client timeout: a call that waits longer has failed."""

    def at(self, source: str) -> "BoundedTransport":
        return BoundedTransport(self.base, source)

    def __call__(self, method: str, path: str, **kw):
        return self.session.request(method, self.base + path, timeout=CLIENT_TIMEOUT_S, **kw)


class Honest:
    """Students and seats heartbeating one call after another; latencies in seconds."""

    def __init__(self, base: str, clients: int, attackers: int = 0):
        teacher = Api(BoundedTransport(base), ADMIN_TOKEN)
        students = [(unique("bench-s"), f"Student {n}") for n in range(clients // 2)]
        seats = [(unique("bench-seat"), f"Seat {n}") for n in range(clients - clients // 2)]
        trickling = [(unique("bench-slow"), f"Slow {n}") for n in range(attackers)]
        roster = [{"student_id": s, "name": n} for s, n in students + seats + trickling]
        exam = teacher.create_exam(title="Slow clients", roster=roster)
        self.students = [(Api(BoundedTransport(base), ADMIN_TOKEN), teacher.join(exam["id"], s)) for s, _ in students]
        self.attack_sessions = [teacher.join(exam["id"], s) for s, _ in trickling]
        self.segment = segment_file(RUN_DIR / "bench-segment.mp4", HONEST_SEGMENT_MIB).read_bytes()
        self.next_seq = 0
        self.seats = [Seat(teacher, f"127.0.3.{n + 1}", s, name) for n, (s, name) in enumerate(seats)]
        for seat in self.seats:
            assert seat.login()["status"] == "success"
        self.latencies: list[float] = []
        self.failures = 0
        self.uploads_ok = self.uploads_failed = 0
        self.uploaded_bytes = 0
        self.stop = threading.Event()

    def measured_afresh(self) -> "Honest":
        """The same clients with nothing measured yet."""
        self.latencies, self.failures, self.uploads_ok, self.uploads_failed = [], 0, 0, 0
        self.uploaded_bytes = 0
        return self

    def _beat(self, call) -> None:
        start = time.perf_counter()
        try:
            ok = call().status_code == 200
        except Exception:  # noqa: BLE001 - a timeout or reset is what is being counted
            ok = False
        self.latencies.append(time.perf_counter() - start if ok else CLIENT_TIMEOUT_S)
        self.failures += not ok

    def _student(self, api: Api, session: dict) -> None:
        while not self.stop.wait(BEAT_EVERY_S):
            self._beat(lambda: api.heartbeat(session))

    def _seat(self, seat: Seat) -> None:
        while not self.stop.wait(BEAT_EVERY_S):
            self._beat(seat.heartbeat)

    def _uploader(self, api: Api, session: dict) -> None:
        image = png_image()
        while not self.stop.wait(1.0):
            try:
                ok = api.screenshot(session, image).status_code == 201
            except Exception:  # noqa: BLE001 - counted
                ok = False
            self.uploads_ok += ok
            self.uploads_failed += not ok

    def _segment_uploader(self, api: Api, session: dict) -> None:
        """Segments one after another: the bytes of those stored in the window are its figure."""
        while not self.stop.is_set():
            self.next_seq += 1
            try:
                ok = api.upload(session, self.next_seq, self.segment).status_code == 201
            except Exception:  # noqa: BLE001 - counted
                ok = False
            self.uploads_ok += ok
            self.uploads_failed += not ok
            self.uploaded_bytes += ok * len(self.segment)

    def run(self, seconds: float) -> None:
        self.stop.clear()
        threads = [threading.Thread(target=self._student, args=s) for s in self.students]
        threads += [threading.Thread(target=self._seat, args=(s,)) for s in self.seats]
        threads.append(threading.Thread(target=self._uploader, args=self.students[0]))
        threads.append(threading.Thread(target=self._segment_uploader, args=self.students[-1]))
        for t in threads:
            t.start()
        time.sleep(seconds)  # the measuring window
        self.stop.set()
        for t in threads:
            t.join()


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def one_run(worker_class: str, args, attacked: bool) -> dict:
    proc, base = start_gunicorn(f"bench-{worker_class.rsplit('.', 1)[-1]}.log",
                                PROCTOR_WEB_WORKER_CLASS=worker_class)
    try:
        honest = Honest(base, args.honest, args.trickle_uploads)
        # Each worker opens its database and Redis connections on first use (pymysql loads the
        # CA bundle for each, blocking a gevent worker for tens of milliseconds): not measured.
        honest.run(args.warmup)
        honest = honest.measured_afresh()
        stop_flag, open_now = multiprocessing.Event(), multiprocessing.Value("i", 0)
        attacker = None
        if attacked:
            host, port = base.removeprefix("http://").split(":")
            plan = ([(login_head(host), b"")] * args.idle + [(login_head(host), b" ")] * args.trickle
                    + [(upload_head(host, s), b"x" * TRICKLE_CHUNK) for s in honest.attack_sessions])
            attacker = multiprocessing.Process(target=attack, args=(host, int(port), plan, open_now, stop_flag))
            attacker.start()
            deadline = time.monotonic() + 30
            while open_now.value < 0.95 * len(plan) and time.monotonic() < deadline:
                time.sleep(0.1)
            # Connected is not yet served: the kernel completes handshakes before Gunicorn accepts
            # them. The first serving of a thousand new connections costs what a thousand requests
            # cost; what is measured is what holding them costs.
            time.sleep(args.settle)
        try:
            started = time.perf_counter()
            honest.run(args.seconds)
            took = time.perf_counter() - started
            held = open_now.value
        finally:
            stop_flag.set()
            if attacker:
                attacker.join(30)
        lat = honest.latencies
        return {
            "p50": percentile(lat, 50), "p99": percentile(lat, 99), "beats": len(lat),
            "failed": honest.failures / max(len(lat), 1),
            "uploads_failed": honest.uploads_failed / max(honest.uploads_ok + honest.uploads_failed, 1),
            "upload_mb_s": honest.uploaded_bytes / took / 1e6,
            "held": held,
        }
    finally:
        proc.stop()


# --- set-up and report ----------------------------------------------------------------------------


def environment() -> None:
    """A data directory, database and Redis of the benchmark's own, for the Gunicorns it starts."""
    data = Path(tempfile.mkdtemp(prefix="proctor-bench-"))
    (RUN_DIR / "logs").mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "PROCTOR_DATA_DIR": str(data),
        "PROCTOR_LOG_DIR": str(RUN_DIR / "logs"),
        "PROCTOR_RUN_DIR": str(RUN_DIR / "run"),
        "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        "PROCTOR_REDIS_PREFIX": "proctor-bench-slow:",
        "PROCTOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{data / 'proctor.db'}",
    })
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True)


def raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=900, help="connections that send headers, then nothing")
    parser.add_argument("--trickle", type=int, default=100, help="connections that send one byte a second")
    parser.add_argument("--trickle-uploads", type=int, default=0,
                        help="connections that PUT a segment of their own session at 1 KiB/s")
    parser.add_argument("--honest", type=int, default=20, help="honest clients (half students, half seats)")
    parser.add_argument("--seconds", type=float, default=10, help="measuring window of each run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of honest calls before any measuring")
    parser.add_argument("--settle", type=float, default=5, help="seconds between the attack's start and measuring")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default=f"gthread,{CHOSEN}", help="worker classes to compare")
    parser.add_argument("--json", action="store_true", help="the medians as JSON, after the runs' lines")
    args = parser.parse_args()
    raise_open_files_limit(args.idle + args.trickle + args.trickle_uploads + 1024)
    environment()
    classes = args.workers.split(",")
    results: dict[tuple[str, bool], list[dict]] = {(c, a): [] for c in classes for a in (False, True)}
    for run in range(args.repeat):
        for worker_class in classes:
            for attacked in (False, True):
                r = one_run(worker_class, args, attacked)
                results[(worker_class, attacked)].append(r)
                print(f"run {run + 1}/{args.repeat} {worker_class} {'attacked' if attacked else 'quiet'}: "
                      f"p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, {r['beats']} beats, "
                      f"{r['failed']:.1%} failed, uploads failed {r['uploads_failed']:.0%}, "
                      f"attack connections open at the end {r['held']}", flush=True)

    keys = ("p50", "p99", "failed", "uploads_failed", "upload_mb_s", "held")
    medians = {(c, a): {k: statistics.median(r[k] for r in runs) for k in keys} for (c, a), runs in results.items()}
    if args.json:
        print(json.dumps({c.rsplit(".", 1)[-1]: {("attacked" if a else "quiet"): m for (c2, a), m in medians.items()
                                                 if c2 == c} for c in classes}))
        return
    print(f"\nGunicorn's logs: {RUN_DIR / 'logs'}")
    print(f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}, "
          f"{'MariaDB/MySQL' if 'mysql' in os.environ['DATABASE_URL'] else 'SQLite'}")
    print(f"attack: {args.idle} idle + {args.trickle} trickling connections + {args.trickle_uploads} uploads "
          f"trickling at 1 KiB/s from {ATTACK_SOURCE}; "
          f"{args.honest} honest clients; medians of {args.repeat} runs of {args.seconds:g} s\n")
    print("| worker class | load | heartbeat p50 | heartbeat p99 | heartbeats failed | uploads failed "
          "| segment uploads | attack held |")
    print("|---|---|---|---|---|---|---|---|")
    for (worker_class, attacked), med in medians.items():
        print(f"| {worker_class} | {'attacked' if attacked else 'quiet'} | {med['p50'] * 1000:.1f} ms | "
              f"{med['p99'] * 1000:.1f} ms | {med['failed']:.1%} | {med['uploads_failed']:.0%} | "
              f"{med['upload_mb_s']:.1f} MB/s | {med['held']:.0f} |")


if __name__ == "__main__":
    main()
