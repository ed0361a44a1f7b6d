"""What the client tells the person: a live table on a terminal (rich), plain log lines otherwise,
and the closing summary (heartbeats, segments sent and acknowledged, latencies, errors by kind)."""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile (``p`` in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without floats
    return ordered[int(rank) - 1]


@dataclass
class StudentStatus:
    """One student's line of the display."""

    name: str
    session_id: int | None = None
    state: str = "starting"
    recorded: int = 0
    uploaded: int = 0
    waiting: int = 0
    last_error: str = ""


@dataclass
class Stats:
    """Counters of the whole process (one student or many), safe to update from any thread."""

    heartbeats: int = 0
    acknowledged: int = 0
    attempts: Counter = field(default_factory=Counter)  # requests that went out, by kind
    errors: Counter = field(default_factory=Counter)
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    students: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def attempt(self, kind: str) -> None:
        with self._lock:
            self.attempts[kind] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def latency(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.latencies[kind].append(seconds)

    def student(self, name: str) -> StudentStatus:
        with self._lock:
            return self.students.setdefault(name, StudentStatus(name))

    def summary(self) -> list[str]:
        with self._lock:
            sessions = {s.session_id for s in self.students.values() if s.session_id is not None}
            states = Counter(s.state for s in self.students.values())
            recorded = sum(s.recorded for s in self.students.values())
            lines = [
                f"summary: {len(sessions)} sessions ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})",
                f"heartbeats: sent {self.attempts['heartbeat']}, answered {self.heartbeats}",
                f"segments: recorded {recorded}, sent {self.attempts['upload']}, "
                f"acknowledged {self.acknowledged}, waiting {sum(s.waiting for s in self.students.values())}",
            ]
            for kind, values in sorted(self.latencies.items()):
                p50, p99 = percentile(values, 50), percentile(values, 99)
                lines.append(f"latency {kind}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(values)} calls)")
            errors = ", ".join(f"{kind} {n}" for kind, n in self.errors.most_common()) or "none"
            lines.append(f"errors: {errors}")
        return lines


class Reporter:
    """Shows progress: a rich table refreshed in place when stdout is a terminal, else one plain
    line per event (for logs and pipes)."""

    def __init__(self, stats: Stats, live: bool | None = None):
        self.stats = stats
        self.live_mode = sys.stdout.isatty() if live is None else live
        self.console = Console(log_path=False)
        self._live: Live | None = None

    def __enter__(self) -> "Reporter":
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=2, get_renderable=self._table)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def event(self, name: str, message: str) -> None:
        if self.live_mode:
            self.console.log(f"{name}: {message}")
        else:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {name}: {message}", flush=True)

    def _table(self) -> Table:
        table = Table(title="proctor exam client", expand=False)
        for column in ("student", "session", "state", "recorded", "uploaded", "waiting", "last error"):
            table.add_column(column, overflow="fold")
        with self.stats._lock:
            rows = list(self.stats.students.values())
        for s in rows:
            table.add_row(s.name, str(s.session_id or "-"), s.state, str(s.recorded), str(s.uploaded),
                          str(s.waiting), s.last_error[-60:])
        return table

    def print_summary(self) -> None:
        for line in self.stats.summary():
            print(line, flush=True)
