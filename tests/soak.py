"""A soak of the whole stack: many students on both front doors for minutes, with disconnects,
client restarts, retried and cut uploads, idle connections held open and the merge worker
restarted mid-exam; then every session must be merged with every segment its client sent.

Usage: python -m tests.soak [--students N] [--minutes M] [--segment-s S] [--sigkill] [--json]
(scripts/soak.sh runs it; tests/test_soak.py runs a short one in the suite).

The stack is its own: a private redis-server, a database of its own (``<database>_soak`` beside a
server database, else a SQLite file), its own data, log and metrics directories, and real
Gunicorn, status worker, Beat and merge worker started with ``tests.helpers``. Students run as
threads of this process:

- desktop seats are ``tests.original_seat.OriginalSeat`` (the original client: naive clock,
  in-memory counter, upload queue, restart counting from 1 again), each from its own loopback
  address; they learn the end from their heartbeat, send what is queued, then log out;
- token-API students join through ``tests.helpers.Api.join``, heartbeat, PUT segments with their
  SHA-256 and finish with their last seq; a restart rejoins and resumes from ``next_seq``.

A disconnect is a window in which a client sends nothing but keeps recording; afterwards it sends
everything queued (a seat in shuffled order). Retries re-send a segment whose answer was "lost";
a cut upload sends half a body on a raw socket and closes it before the real upload. Segments are
1 s H.264 clips made once with FFmpeg's lavfi sources, so merges are real.

Figures: heartbeats, segments sent/acknowledged/stored/merged, 5xx seen by clients and in the
access log, p50/p99 latency per kind, and the RSS of every Gunicorn and Celery process at warm-up
and at the end. "Flat" means each process that lived from its warm-up to the end grew by less than
``Options.rss_growth_mib`` (a resource bound: it holds however long the soak runs).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from tests.helpers import (
    BIN, RUN_DIR, Api, HttpTransport, Process, free_port, install_environment, migrate_from_nothing, sha256,
    start_gunicorn, start_worker, unique, wait_until,
)
from tests.media_helpers import make_clip
from tests.original_seat import OriginalSeat

ZONE = ZoneInfo("Asia/Shanghai")
CLIP_S = 1.0
PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "yuvtestsrc")
FINAL = frozenset({"merged", "partial", "failed"})


@dataclass(frozen=True)
class Options:
    students: int = 200
    minutes: float = 5.0
    # Each student records one 1 s clip this often (the desktop seats' shortest interval is 30 s).
    segment_s: float = 30.0
    heartbeat_s: float = 10.0
    idle: int = 100  # raw sockets pending at all times during the exam
    partial_headers: int = 10  # of those, how many send the start of a request and stop
    disconnect_share: float = 0.3
    restart_share: float = 0.2
    early_finish_share: float = 0.1
    retry_share: float = 0.1  # of acknowledged uploads, re-sent as if the answer was lost
    cut_share: float = 0.03  # of token uploads, first sent cut in half on a raw socket
    sigkill: bool = False  # also SIGKILL the merge worker (mid-merge when one runs)
    merge_timeout_s: float = 1200  # a killed merge comes back through reconcile (every 2 min)
    rss_growth_mib: float = 20
    seed: int = 1

    @property
    def length_s(self) -> float:
        return self.minutes * 60


# --- figures -------------------------------------------------------------------------------------


class Tally:
    """What the clients saw, from a response hook on every requests session (thread-safe)."""

    KINDS = (("/heartbeat", "heartbeat"), ("/segments/", "segment"), ("/screen_recording", "segment"),
             ("/login", "login"), ("/join", "join"), ("/finish", "finish"), ("/logout", "logout"))

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.unexpected: list[str] = []
        self.counts: Counter = Counter()

    def kind(self, url: str) -> str:
        return next((k for part, k in self.KINDS if part in url), "other")

    def hook(self, response, *args, **kwargs):
        kind = self.kind(response.url)
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
            self.latency[kind].append(response.elapsed.total_seconds())
            if response.status_code >= 400 and not self.expected(response) and len(self.unexpected) < 50:
                self.unexpected.append(f"{response.request.method} {response.url} {response.status_code} "
                                       f"{response.text[:200]}")
        return response

    @staticmethod
    def expected(response) -> bool:
        """The one refusal a well-behaved client meets: a rejoin while its old client still
        counts as online (it waits Retry-After and asks again)."""
        return response.status_code == 409 and "session_in_use" in response.text

    def watch(self, session: requests.Session) -> None:
        session.hooks["response"].append(self.hook)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def answered(self, kind: str, low: int, high: int) -> int:
        return sum(n for (k, status), n in self.statuses.items() if k == kind and low <= status < high)

    def percentiles(self, kind: str | None = None) -> tuple[float, float]:
        """p50 and p99 in ms."""
        return p50_p99([v * 1000 for k, vs in self.latency.items() if kind in (None, k) for v in vs])


def p50_p99(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    if not values:
        return 0.0, 0.0
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]


# --- the stack -----------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU time (user and system, s) a live process has used; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(found))


def crowd_environment() -> None:
    """The environment of a benchmark whose students all join from this one address at once: the
    suite's settings, keeping a DATABASE_URL given (the stack makes a database of its own beside
    it), with the join ceilings per address and per exam raised (a hall's students come from many
    addresses)."""
    given = os.environ.get("DATABASE_URL")
    install_environment()
    if given:
        os.environ["DATABASE_URL"] = given
    os.environ.update({"PROCTOR_JOIN_ADDRESS_RATE_LIMIT": "1000000 per minute",
                       "PROCTOR_JOIN_EXAM_RATE_LIMIT": "1000000 per minute"})


def soak_database(url: str, folder: Path) -> str:
    """A database of the soak's own, emptied and migrated: ``<name>_soak`` on the server of a
    server URL, else a SQLite file in ``folder``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import URL, make_url

    if url.startswith("sqlite"):
        own = f"sqlite:///{folder / 'proctor.db'}"
    else:
        parsed = make_url(url)
        parsed = parsed.set(database=f"{parsed.database}_soak")
        server = create_engine(URL.create(parsed.drivername, parsed.username, parsed.password, parsed.host,
                                          parsed.port, query=parsed.query))
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{parsed.database}`"))
        server.dispose()
        own = parsed.render_as_string(hide_password=False)
    migrate_from_nothing(own)
    return own


class Stack:
    """Redis, Gunicorn, status worker, Beat and merge worker of the soak's own."""

    def __init__(self, options: Options):
        self.dir = RUN_DIR / unique("soak-")
        for name in ("data", "logs", "run", "prometheus", "redis"):
            (self.dir / name).mkdir(parents=True)
        port = free_port()
        self.redis = Process([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                              "127.0.0.1", "--dir", str(self.dir / "redis"), "--save", "", "--appendonly", "no"],
                             f"{self.dir.name}-redis.log").start()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        import redis

        wait_until(lambda: redis.Redis.from_url(self.redis_url).ping(), timeout=20, what="the soak's redis")
        self.env = {
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": soak_database(os.environ["DATABASE_URL"], self.dir / "data"),
            "PROCTOR_DATA_DIR": str(self.dir / "data"),
            "PROCTOR_LOG_DIR": str(self.dir / "logs"),
            "PROCTOR_RUN_DIR": str(self.dir / "run"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "prometheus"),
            "PROCTOR_TIMEZONE": ZONE.key,
            # A restarted token client's rejoin waits this long after its old client fell silent.
            "PROCTOR_OFFLINE_AFTER_S": "20",
            # Every client finishes by itself; this only bounds a test that went wrong.
            "PROCTOR_END_GRACE_S": "120",
        }
        self.web, self.base = start_gunicorn(f"{self.dir.name}-gunicorn.log", **self.env)
        self.status = self._worker("status_check", 1, "soak-status")
        self.beat = Process([str(BIN / "celery"), "-A", "celery_config.celery_app", "beat", "--loglevel=INFO"],
                            f"{self.dir.name}-beat.log", env=self.env).start()
        self.merge = self._worker("video_merge", 2, "soak-merge")
        self.merge_restarts: list[str] = []

    def _worker(self, queue: str, concurrency: int, name: str) -> Process:
        return start_worker(queue, concurrency, name, ping_broker=self.redis_url, **self.env)

    def restart_merge_worker(self, sig: int) -> None:
        """SIGTERM: a warm shutdown (to the main process, as systemd's KillMode=mixed does);
        SIGKILL: the whole process group at once, running merges and FFmpeg included."""
        if sig == signal.SIGKILL:
            self.merge.kill()
        else:
            os.kill(self.merge.proc.pid, sig)
            try:
                self.merge.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.merge.stop()
        self.merge_restarts.append(signal.Signals(sig).name)
        self.merge = self._worker("video_merge", 2, "soak-merge")

    def processes(self) -> dict[int, str]:
        """Every long-lived process of the stack by pid (FFmpeg children of merges excluded)."""
        found = {}
        for proc, name in ((self.web, "gunicorn"), (self.status, "status worker"), (self.beat, "beat"),
                           (self.merge, "merge worker")):
            if proc.alive():
                found[proc.proc.pid] = name
                found.update({pid: f"{name} child" for pid in children(proc.proc.pid)})
        return found

    def access_log_statuses(self) -> Counter:
        pattern = re.compile(r'" (\d{3}) (?:\d+|-) \d+ms')
        return Counter(int(m.group(1)) for m in pattern.finditer(self.access_log()))

    def access_log_ms(self, path: str) -> list[int]:
        """Gunicorn's own time (ms, from the request read to the answer sent) of every request whose
        path matches the regular expression ``path``."""
        pattern = re.compile(r'"[A-Z]+ (?:' + path + r') [^"]*" \d{3} (?:\d+|-) (\d+)ms')
        return [int(m.group(1)) for m in pattern.finditer(self.access_log())]

    def access_log(self) -> str:
        path = self.dir / "logs" / "gunicorn_access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_class(self) -> str:
        """Gunicorn's worker class as it reported it at start (the configuration may change)."""
        path = self.dir / "logs" / "gunicorn_error.log"
        found = re.search(r"Using worker: (\S+)", path.read_text(errors="replace") if path.exists() else "")
        return found.group(1) if found else "unknown"

    def error_log_problems(self) -> list[str]:
        path = self.dir / "logs" / "gunicorn_error.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line for line in text.splitlines() if "Error handling request" in line or "WORKER TIMEOUT" in line]

    def stop(self) -> None:
        for proc in (self.beat, self.merge, self.status, self.web, self.redis):
            proc.stop()


class MemorySampler(threading.Thread):
    """RSS of every process of the stack every few seconds: each pid's warm-up sample is its
    first one after the exam's warm-up and after it had run for ``settle_s``."""

    def __init__(self, stack: Stack, warm_at: float, settle_s: float = 15, every_s: float = 3):
        super().__init__(daemon=True)
        self.stack, self.warm_at, self.settle_s, self.every_s = stack, warm_at, settle_s, every_s
        self.first_seen: dict[int, float] = {}
        self.warm: dict[int, tuple[str, int]] = {}
        self.last: dict[int, tuple[str, int]] = {}
        self.halt = threading.Event()

    def sample(self) -> None:
        now = time.monotonic()
        for pid, name in self.stack.processes().items():
            kib = rss_kib(pid)
            if kib is None:
                continue
            self.first_seen.setdefault(pid, now)
            self.last[pid] = (name, kib)
            if pid not in self.warm and now >= max(self.warm_at, self.first_seen[pid] + self.settle_s):
                self.warm[pid] = (name, kib)

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            self.sample()


# --- clients -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """One student's course, in seconds from the exam's start."""

    disconnect: tuple[float, float] | None = None
    restart_at: float | None = None
    finish_at: float | None = None


def plan_for(index: int, options: Options, rng: random.Random) -> Plan:
    """Random, except that the first students of each door do each thing at least once."""
    length = options.length_s
    plan = Plan()
    # Restarts come first: a restarted token client may have to wait PROCTOR_OFFLINE_AFTER_S before
    # its rejoin is let in, and must be back before the exam ends.
    if index < 2 or rng.random() < options.restart_share:
        plan.restart_at = rng.uniform(0.15, 0.35) * length
    if index < 2 or rng.random() < options.disconnect_share:
        start = rng.uniform(0.4, 0.6) * length
        plan.disconnect = (start, min(start + rng.uniform(0.05, 0.2) * length, 0.8 * length))
    if 2 <= index < 4 or rng.random() < options.early_finish_share:
        plan.finish_at = rng.uniform(0.35, 0.65) * length
    return plan


class Student:
    """The loop both doors share: record on a timer, heartbeat on a timer, send what is queued
    unless disconnected, restart once when planned, finish at the end (or early)."""

    door = ""

    def __init__(self, soak: "Soak", index: int, plan: Plan):
        self.soak, self.index, self.plan = soak, index, plan
        self.student_id = f"soak{index:04d}-{soak.tag}"
        self.name = f"Soak Student {index}"
        self.rng = random.Random(soak.options.seed * 100_003 + index)
        self.acked: set[tuple[int, int]] = set()  # (the client's run: 0, 1 after a restart; seq)
        self.sent = 0
        self.session_id: int | None = None
        self.finished = False
        self.error: str | None = None

    # Door-specific: connect, record, send, heartbeat, restart, end_noticed, finish_call.
    def run(self) -> None:
        o = self.soak.options
        try:
            self.persist(self.connect)
            self.start_timers(first=True)
            offline_before = False
            while not self.finished and not self.soak.abort.is_set():
                now = self.soak.elapsed()
                window = self.plan.disconnect
                offline = window is not None and window[0] <= now < window[1]
                if offline and not offline_before:
                    self.soak.tally.count(f"disconnects ({self.door})")
                if now >= self.next_segment:
                    self.record()
                    self.next_segment += o.segment_s
                if not offline:
                    self.online_tick(now, resumed=offline_before)
                offline_before = offline
                if now > o.length_s + 300:
                    raise RuntimeError("still not finished 5 minutes after the exam's end")
                time.sleep(max(0.05, min(self.next_segment, self.next_beat, now + 1) - self.soak.elapsed()))
        except Exception as err:  # noqa: BLE001 - every failure is a finding of the soak
            self.error = f"{self.door} {self.student_id}: {type(err).__name__}: {err}"

    def persist(self, call):
        """``call()`` again after a connection error (its answer may have been lost on the way:
        the call may have happened), for up to a minute."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return call()
            except requests.RequestException as err:
                self.soak.tally.count(f"connection errors ({type(err).__name__})")
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def start_timers(self, first: bool = False) -> None:
        """A client records and heartbeats on its own timers, from its start (a random phase)."""
        now, o = self.soak.elapsed(), self.soak.options
        self.next_segment = now + (self.rng.uniform(0, o.segment_s) if first else o.segment_s)
        self.next_beat = now + (self.rng.uniform(0, o.heartbeat_s) if first else 0)

    def online_tick(self, now: float, resumed: bool) -> None:
        try:
            if now >= self.next_beat:
                self.next_beat += self.soak.options.heartbeat_s
                self.heartbeat()
            self.send(shuffle=resumed)
            if (self.plan.restart_at is not None and now >= self.plan.restart_at and self.flushed()
                    and not self.soak.ended.is_set()):
                self.plan.restart_at = None
                self.restart()
                self.soak.tally.count(f"restarts ({self.door})")
                self.start_timers()
            if (self.plan.finish_at is not None and now >= self.plan.finish_at) or self.end_noticed():
                self.finish()
        except requests.RequestException as err:
            self.soak.tally.count(f"connection errors ({type(err).__name__})")

    def finish(self) -> None:
        """Send everything still queued (retrying), then finish or log out."""
        deadline = time.monotonic() + 120
        while not self.flushed():
            if time.monotonic() > deadline:
                raise RuntimeError("could not send its queued segments within 120 s")
            try:
                self.send(shuffle=False)
            except requests.RequestException as err:
                self.soak.tally.count(f"connection errors ({type(err).__name__})")
                time.sleep(1)
        self.finish_call()
        self.finished = True

    def maybe_retry(self, resend) -> None:
        """As if the answer to an acknowledged upload was lost: the client sends it again."""
        if self.rng.random() < self.soak.options.retry_share:
            r = resend()
            self.soak.tally.count("retries of acknowledged uploads")
            if r.status_code != 200:
                raise RuntimeError(f"a retried upload was answered {r.status_code}: {r.text[:200]}")


class TokenStudent(Student):
    door = "token"

    def connect(self) -> None:
        self.api = Api(HttpTransport(self.soak.base))
        self.soak.tally.watch(self.api.transport.session)
        self.session = self.api.join(self.soak.exam_id, self.student_id)
        self.session_id = self.session["session_id"]
        self.next_seq = self.session["next_seq"]
        self.pending: list[int] = []

    def record(self) -> None:
        self.pending.append(self.next_seq)
        self.next_seq += 1
        self.sent += 1

    def flushed(self) -> bool:
        return not self.pending

    def send(self, shuffle: bool) -> None:
        order = list(self.pending)
        if shuffle:
            self.rng.shuffle(order)  # back from a disconnect: the backlog goes out in any order
        for seq in order:
            data = self.soak.clips[seq % len(self.soak.clips)]
            if self.rng.random() < self.soak.options.cut_share:
                self.cut_upload(seq, data)
            r = self.put(seq, data)
            if r.status_code in (200, 201):
                self.pending.remove(seq)
                self.acked.add((0, seq))
                self.maybe_retry(lambda: self.put(seq, data))

    def put(self, seq: int, data: bytes) -> requests.Response:
        return self.api.upload(self.session, seq, data, **{"X-Content-SHA256": sha256(data)})

    def cut_upload(self, seq: int, data: bytes) -> None:
        """Half the body on a raw socket, then the connection dies: nothing may be stored."""
        host, port = self.soak.base.removeprefix("http://").split(":")
        head = (f"PUT /api/sessions/{self.session_id}/segments/{seq} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {self.session['token']}\r\nContent-Type: video/mp4\r\n"
                f"Content-Length: {len(data)}\r\n\r\n")
        try:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(head.encode() + data[: len(data) // 2])
        except OSError:
            pass
        self.soak.tally.count("cut uploads")

    def heartbeat(self) -> None:
        self.api.heartbeat(self.session)

    def restart(self) -> None:
        """A new client process: a fresh connection and token; it resumes from next_seq. While
        the old client still counts as online the join is refused with Retry-After: it waits."""
        self.api = Api(HttpTransport(self.soak.base))
        self.soak.tally.watch(self.api.transport.session)
        deadline = time.monotonic() + 120
        while (r := self.persist(lambda: self.api.try_join(self.soak.exam_id, self.student_id))).status_code != 201:
            if not Tally.expected(r) or time.monotonic() > deadline:
                raise RuntimeError(f"rejoin answered {r.status_code}: {r.text[:200]}")
            self.soak.tally.count("rejoins asked to wait (session in use)")
            # Asks again within Retry-After rather than after it: the header can name a rate
            # limit's window instead of the refusal's own wait.
            time.sleep(min(5.0, float(r.headers.get("Retry-After", "1"))))
        self.session = r.json()
        if self.session["next_seq"] != self.next_seq:
            raise RuntimeError(f"rejoined with next_seq {self.session['next_seq']}, sent up to {self.next_seq - 1}")

    def end_noticed(self) -> bool:
        if not self.soak.ended.is_set():
            return False
        state = self.api.get(f"/api/sessions/{self.session_id}", self.session["token"]).json()["state"]
        return state == "closing"

    def finish_call(self) -> None:
        self.api.finish(self.session, self.next_seq - 1 if self.next_seq else None)


class DeskSeat(Student):
    door = "seat"

    def connect(self) -> None:
        self.address = f"127.0.{1 + self.index // 250}.{1 + self.index % 250}"
        self.run_no = 0
        self.end_seen = False
        self.login(OriginalSeat(self.soak.base, self.student_id, self.name, ZONE, self.address))

    # A login whose answer was lost still started a run on the server: the recording's runs are
    # compared with the client's in order, not by number (see check_recording).

    def login(self, seat: OriginalSeat) -> None:
        self.seat = seat
        self.soak.tally.watch(seat.http)
        answer = self.persist(seat.login)
        if answer.get("status") != "success":
            raise RuntimeError(f"login refused: {answer}")

    def record(self) -> None:
        self.seat.record(self.soak.clip_paths[(self.run_no + self.seat.sequence) % len(self.soak.clip_paths)])
        self.sent += 1

    def flushed(self) -> bool:
        return not self.seat.queue

    def send(self, shuffle: bool) -> None:
        order = list(range(len(self.seat.queue)))
        if shuffle:
            self.rng.shuffle(order)  # what failed stays queued and goes after later ones
        try:
            self.seat.send_queue(order)
        finally:
            for item in self.seat.sent:
                self.acked.add((self.run_no, item.sequence))
                self.maybe_retry(lambda: self.seat.upload(item))
            self.seat.sent.clear()

    def heartbeat(self) -> None:
        answer = self.seat.heartbeat()
        if answer["http_status"] == 200 and "end_time" in answer and self.seat.remaining().total_seconds() <= 0:
            self.end_seen = True  # the client's own end timer: stop, send the queue, log out

    def restart(self) -> None:
        self.run_no += 1
        self.login(self.seat.restart())

    def end_noticed(self) -> bool:
        return self.end_seen

    def finish_call(self) -> None:
        answer = self.seat.logout()
        if answer.get("status") != "success":
            raise RuntimeError(f"logout refused: {answer}")


class IdleConnections(threading.Thread):
    """Raw sockets that connect and send nothing, or the start of a request, held open by the
    client for the whole exam: whenever the server closes one the client opens another of its
    kind, so ``count`` are always pending. How long the server kept each one is measured."""

    def __init__(self, base: str, count: int, partial: int):
        super().__init__(daemon=True)
        self.host, self.port = base.removeprefix("http://").split(":")
        self.partial = partial
        self.socks: dict[socket.socket, tuple[float, bool]] = {}
        for n in range(count):
            self.open(n < partial)
        self.held_s: list[float] = []  # of those the server closed (or answered)
        self.halt = threading.Event()

    def open(self, partial: bool) -> None:
        sock = socket.create_connection((self.host, int(self.port)), timeout=10)
        if partial:
            sock.sendall(f"POST /api/heartbeat HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: app".encode())
        self.socks[sock] = (time.monotonic(), partial)

    def run(self) -> None:
        while self.socks and not self.halt.wait(0.5):
            try:
                readable, _, _ = select.select(list(self.socks), [], [], 0)
                for sock in readable:
                    opened, partial = self.socks.pop(sock)
                    self.held_s.append(time.monotonic() - opened)
                    sock.close()
                    self.open(partial)
            except (OSError, ValueError):  # closed by close() meanwhile
                return

    def figures(self) -> dict:
        held = sorted(self.held_s)
        return {"open_now": len(self.socks), "partial_headers": self.partial,
                "closed_by_server": len(held),
                "closed_after_s_median": round(held[len(held) // 2], 1) if held else None}

    def close(self) -> None:
        self.halt.set()
        for sock in list(self.socks):
            sock.close()


# --- the soak ------------------------------------------------------------------------------------


@dataclass
class Figures:
    options: dict
    students: dict = field(default_factory=dict)
    heartbeats: int = 0
    segments: dict = field(default_factory=dict)
    status_5xx: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    idle: dict = field(default_factory=dict)
    merge_worker: list = field(default_factory=list)
    web_worker_class: str = ""
    rss_mib: list = field(default_factory=list)
    duration_s: float = 0.0
    problems: list = field(default_factory=list)


class Soak:
    clip_s = CLIP_S  # how long each clip sent lasts (its recording is checked against it)

    def __init__(self, options: Options, stack: Stack, clip_paths: list[Path]):
        self.options, self.stack, self.base = options, stack, stack.base
        self.clip_paths = clip_paths
        self.clips = [p.read_bytes() for p in clip_paths]
        self.tally = Tally()
        self.teacher = Api(HttpTransport(self.base))
        self.tag = unique("")
        self.ended, self.abort = threading.Event(), threading.Event()
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_until_elapsed(self, t: float) -> None:
        time.sleep(max(0.0, t - self.elapsed()))

    def roster(self) -> list[Student]:
        """Every other student is a desktop seat; each door's first students do everything once."""
        o, rng = self.options, random.Random(self.options.seed)
        return [(DeskSeat if i % 2 else TokenStudent)(self, i, plan_for(i // 2, o, rng)) for i in range(o.students)]

    def during_exam(self, figures: Figures) -> None:
        """What happens to the stack while the students work: the merge worker restarted (SIGTERM,
        and SIGKILL when asked); returns at the exam's end."""
        o = self.options
        self.wait_until_elapsed(0.45 * o.length_s)
        self.stack.restart_merge_worker(signal.SIGTERM)
        if o.sigkill:
            self.wait_until_elapsed(0.65 * o.length_s)
            figures.events["merge running at SIGKILL"] = self.wait_for_a_running_merge(0.1 * o.length_s)
            self.stack.restart_merge_worker(signal.SIGKILL)
        self.wait_until_elapsed(o.length_s)

    def run(self) -> Figures:
        o = self.options
        figures = Figures(options=asdict(o))
        students = self.roster()
        exam = self.teacher.create_exam(title=f"soak {self.tag}", start_in_s=-60, length_s=60 + o.length_s + 3600,
                                        roster=[{"student_id": s.student_id, "name": s.name} for s in students])
        self.exam_id = exam["id"]
        idle = IdleConnections(self.base, o.idle, o.partial_headers)
        idle.start()
        self.started = time.monotonic()
        sampler = MemorySampler(self.stack, warm_at=self.started + 0.25 * o.length_s)
        sampler.start()
        threads = [threading.Thread(target=s.run, daemon=True) for s in students]
        for t in threads:
            t.start()
            time.sleep(min(0.05, o.length_s / 20 / max(1, o.students)))  # a staggered start
        try:
            self.during_exam(figures)
            figures.idle = idle.figures()
            r = self.teacher.post(f"/api/exams/{self.exam_id}/end", "teacher")
            assert r.status_code == 200, r.text
            self.ended.set()
            ended_at = self.elapsed()
            for t in threads:
                t.join(timeout=max(1.0, o.length_s + 400 - self.elapsed()))
            figures.events["clients done (s after the end)"] = round(self.elapsed() - ended_at, 1)
            ids = {s["student_id"]: s["id"] for s in self.teacher.roster_sessions(self.exam_id)}
            for s in students:
                s.session_id = ids.get(s.student_id)
            try:
                self.wait_for_merges(students, o.merge_timeout_s)
                figures.events["merge backlog drained (s after the end)"] = round(self.elapsed() - ended_at)
            except AssertionError as err:
                figures.problems.append(str(err))
        finally:
            self.abort.set()
            idle.close()
            sampler.halt.set()
        sampler.sample()
        figures.duration_s = round(self.elapsed(), 1)
        self.fill(figures, students, sampler)
        return figures

    def wait_for_a_running_merge(self, timeout: float) -> bool:
        try:
            wait_until(lambda: any((s["recording"] or {}).get("status") == "merging"
                                   for s in self.teacher.roster_sessions(self.exam_id)),
                       timeout=timeout, interval=0.5, what="a merge in progress")
            return True
        except AssertionError:
            return False

    def wait_for_merges(self, students: list[Student], timeout: float) -> None:
        expected = {s.session_id for s in students if s.finished}
        wait_until(lambda: expected <= {s["id"] for s in self.teacher.roster_sessions(self.exam_id)
                                        if s["state"] in FINAL},
                   timeout=timeout, interval=2, what="every finished session to be merged")

    # --- checks and figures --------------------------------------------------------------------
    def fill(self, f: Figures, students: list[Student], sampler: MemorySampler) -> None:
        o, tally = self.options, self.tally
        f.problems += [s.error for s in students if s.error]
        f.problems += [f"{s.door} {s.student_id} did not finish" for s in students if not s.finished and not s.error]
        f.students = {"total": len(students), "seats": sum(s.door == "seat" for s in students),
                      "token": sum(s.door == "token" for s in students)}
        f.heartbeats = tally.answered("heartbeat", 200, 300)
        merged = stored = 0
        for s in students:
            if s.session_id is None:
                continue
            view = self.teacher.session(s.session_id)
            stored += view["segments"]
            used, problem = check_recording(view, s.acked, self.clip_s)
            merged += used
            if problem:
                f.problems.append(f"{s.door} {s.student_id} (session {s.session_id}): {problem}")
        f.segments = {"sent": sum(s.sent for s in students), "acknowledged": sum(len(s.acked) for s in students),
                      "stored": stored, "merged": merged}
        log_statuses = self.stack.access_log_statuses()
        f.status_5xx = {"seen_by_clients": sum(n for (_, st), n in tally.statuses.items() if st >= 500),
                        "in_access_log": sum(n for st, n in log_statuses.items() if st >= 500),
                        "requests_in_access_log": sum(log_statuses.values())}
        f.latency_ms = {name: [round(v, 1) for v in tally.percentiles(kind)]
                        for name, kind in (("all", None), ("heartbeat", "heartbeat"), ("segment", "segment"))}
        f.events = {**dict(tally.counts), **f.events}
        f.merge_worker = self.stack.merge_restarts
        f.web_worker_class = self.stack.worker_class()
        f.problems += [f"{n} answers {st} seen by clients" for (_, st), n in tally.statuses.items() if st >= 500]
        f.problems += [f"{n} answers {st} in the access log" for st, n in log_statuses.items() if st >= 500]
        f.problems += [f"unexpected answer: {u}" for u in tally.unexpected]
        f.problems += [f"gunicorn error log: {line}" for line in self.stack.error_log_problems()[:10]]
        alive = self.stack.processes()
        for pid, (name, end_kib) in sorted(sampler.last.items(), key=lambda kv: kv[1][0]):
            if pid not in alive:
                continue  # stopped on purpose (the restarted merge worker) or recycled
            warm = sampler.warm.get(pid, (name, None))[1]
            row = {"process": name, "pid": pid, "warm_up": mib(warm), "end": mib(end_kib)}
            f.rss_mib.append(row)
            if warm is None:
                f.problems.append(f"no warm-up memory sample of {name} {pid}")
            elif (end_kib - warm) / 1024 >= o.rss_growth_mib:
                f.problems.append(f"{name} {pid} grew from {row['warm_up']} to {row['end']} MiB")


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def check_recording(view: dict, acked: set[tuple[int, int]], clip_s: float = CLIP_S) -> tuple[int, str | None]:
    """(segments in the recording, what is wrong with it or None): merged, no gap, exactly the
    acknowledged segments run by run, lasting as long as they do together."""
    rec = view["recording"] or {}
    if not acked and view["segments"] == 0 and rec.get("status") == "failed":
        return 0, None  # a client that recorded nothing (it joined too late in a short exam)
    if rec.get("status") != "merged":
        return 0, f"recording is {rec.get('status')} (session {view['state']}): {rec.get('error') or rec.get('gaps')}"
    used = rec["report"]["segments_used"]
    if view["segments"] != len(acked):
        return len(used), f"server stored {view['segments']} segments, the client had {len(acked)} acknowledged"
    if rec["gaps"]:
        return len(used), f"gaps {rec['gaps']}"
    if "earlier recording" not in used and runs_of(map(report_label, used)) != runs_of(acked):
        return len(used), f"recording has {sorted(map(str, used))[:20]}, the client sent {sorted(acked)[:20]}"
    expected = len(acked) * clip_s
    if abs(rec["duration"] - expected) > max(1.0, 0.02 * expected):
        return len(used), f"recording lasts {rec['duration']} s for {len(acked)} clips of {clip_s} s"
    return len(acked) if "earlier recording" in used else len(used), None


def report_label(label: int | str) -> tuple[int, int]:
    """A merge report's segment label (``seq``, or ``run:seq`` after the first run) as (run, seq)."""
    run, _, seq = str(label).rpartition(":")
    return int(run or 0), int(seq)


def runs_of(labels) -> list[set[int]]:
    """The seqs of each run that has any, in run order."""
    by_run: dict[int, set[int]] = defaultdict(set)
    for run, seq in labels:
        by_run[run].add(seq)
    return [by_run[run] for run in sorted(by_run)]


def make_clips(folder: Path) -> list[Path]:
    """Self-contained 1 s H.264 mp4 clips, as the seats' recorder writes them; each a different
    picture, so a seat's restarted run sends other bytes under the same sequence."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make_clip(folder / f"clip{i}.mp4", seconds=CLIP_S, audio=False, rate=5, pattern=p)
            for i, p in enumerate(PATTERNS)]


def run_soak(options: Options) -> Figures:
    """Start the soak's stack, run the exam, check it and stop the stack; the figures."""
    stack = Stack(options)
    try:
        return Soak(options, stack, make_clips(stack.dir / "clips")).run()
    finally:
        stack.stop()


def report(f: Figures) -> str:
    """The figures, for a person (the README's Reliability section)."""
    o = f.options
    lines = [
        f"students: {f.students['total']} ({f.students['seats']} desktop seats, {f.students['token']} token API), "
        f"{o['minutes']} min exam, a segment every {o['segment_s']} s, a heartbeat every {o['heartbeat_s']} s; "
        f"{f.duration_s} s in all",
        f"gunicorn worker class: {f.web_worker_class}",
        f"heartbeats answered: {f.heartbeats}",
        "segments: " + ", ".join(f"{k} {v}" for k, v in f.segments.items()),
        "5xx: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.status_5xx.items()),
        "latency p50/p99 ms: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in f.latency_ms.items()),
        "events: " + ", ".join(f"{k} {v}" for k, v in sorted(f.events.items())),
        "idle connections: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.idle.items()),
        "merge worker restarts: " + (", ".join(f.merge_worker) or "none"),
        f"RSS MiB at warm-up -> end (bound: growth < {o['rss_growth_mib']} MiB):",
        *(f"  {r['process']:<20} {r['pid']:>7}  {r['warm_up']} -> {r['end']}" for r in f.rss_mib),
        f"problems: {len(f.problems)}",
        *(f"  {p}" for p in f.problems[:40]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=defaults.students)
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--segment-s", type=float, default=defaults.segment_s)
    parser.add_argument("--idle", type=int, default=defaults.idle)
    parser.add_argument("--partial-headers", type=int, default=defaults.partial_headers)
    parser.add_argument("--sigkill", action="store_true", help="also SIGKILL the merge worker mid-exam")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.students < 1 or args.minutes <= 0 or not 0 <= args.partial_headers <= args.idle:
        parser.error("need --students >= 1, --minutes > 0 and 0 <= --partial-headers <= --idle")
    install_environment()
    options = Options(students=args.students, minutes=args.minutes, segment_s=args.segment_s, idle=args.idle,
                      partial_headers=args.partial_headers, sigkill=args.sigkill, seed=args.seed)
    figures = run_soak(options)
    print(report(figures))
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
    print(f"logs: {RUN_DIR}", file=sys.stderr)
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
