"""Benchmark: a whole exam hall on the whole stack, at the original desktop client's cadence.

Usage: .venv/bin/python bench/hall.py [--seats N] [--seconds S] [--segment-s S] [--heartbeat-s S]
                                      [--screenshot-s S] [--merge-timeout S] [--json]

N desktop seats as the original client behaves (``tests.original_seat.OriginalSeat``: its own
loopback address, a heartbeat every ``--heartbeat-s`` (30), a self-contained mp4 segment of
``--segment-s`` (60 s, about 2 MB) queued and sent when recorded, a PNG screenshot every
``--screenshot-s`` (30)) plus N token-API students (join, heartbeat and a segment at the same
cadence, PUT with its SHA-256), each on timers of its own with a random phase, for ``--seconds``
of exam; then the exam is ended, each client sends what it still holds and logs out or finishes,
and every session's recording must be merged from exactly the segments its client had
acknowledged. The clients and the checks are the soak's (tests/soak.py) without its faults: no
disconnects, restarts, retries, cut uploads, idle connections or worker restarts.

The stack is the soak's own: a private redis-server, a database of its own (``<database>_soak``
beside a DATABASE_URL on a server, else a SQLite file), Gunicorn with the project's
gunicorn_config.py, the status worker, Beat and the merge worker. Every student joins at the
start from one address: the join ceilings per address and per exam, there against a crowd
joining from one address, are raised for the run.

Prints the figures: heartbeats/s and uploads/s answered over the exam, p50/p99 latency of the
heartbeats, segments and screenshots, failed requests (connection errors and answers >= 400),
segments sent/acknowledged/stored/merged, how long the merges took after the end, and anything
the soak's checks found (``problems``); ``--json`` prints them as one JSON object instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import png_image  # noqa: E402 - after the path
from tests.media_helpers import make_clip  # noqa: E402
from tests.soak import (  # noqa: E402
    DeskSeat, Figures, Options, Plan, Soak, Stack, Student, TokenStudent, cpu_s, crowd_environment, p50_p99,
)

# A 60 s segment of the shipped settings (2 fps, half of a 1080p screen) is about 2 MB.
SEGMENT_BITRATE = "270k"
PATTERNS = ("testsrc2", "smptebars")
HEARTBEAT_PATHS = r"/api/heartbeat|/api/sessions/\d+/heartbeat"


class HallSeat(DeskSeat):
    """A desktop seat that also sends a screenshot on a timer of its own, as the original does
    when screenshots are enabled."""

    def start_timers(self, first: bool = False) -> None:
        super().start_timers(first)
        every = self.soak.screenshot_s
        self.next_shot = self.soak.elapsed() + (self.rng.uniform(0, every) if first else every)

    def online_tick(self, now: float, resumed: bool) -> None:
        super().online_tick(now, resumed)
        if now >= self.next_shot and not self.finished:
            self.next_shot += self.soak.screenshot_s
            try:
                self.screenshot()
            except requests.RequestException as err:
                self.soak.tally.count(f"connection errors ({type(err).__name__})")

    def screenshot(self) -> None:
        seat = self.seat
        fields = {"student_id": seat.student_id, "exam_id": str(seat.exam_id), "username": seat.student_name,
                  "timestamp": seat.now().isoformat()}
        seat.http.post(f"{seat.base}/api/screenshot", data=fields, timeout=30,
                       files={"screenshot": ("screenshot.png", self.soak.png, "image/png")})


class Hall(Soak):
    """The soak's exam with every student at the original cadence and nothing going wrong."""

    def __init__(self, options: Options, stack: Stack, clip_paths: list[Path], screenshot_s: float):
        super().__init__(options, stack, clip_paths)
        self.clip_s, self.screenshot_s = options.segment_s, screenshot_s
        self.png = png_image(64, 36)

    def roster(self) -> list[Student]:
        return [(HallSeat if i % 2 else TokenStudent)(self, i, Plan()) for i in range(self.options.students)]

    def during_exam(self, figures: Figures) -> None:
        self.wait_until_elapsed(self.options.length_s)


def make_segments(folder: Path, seconds: float) -> list[Path]:
    """Self-contained H.264 mp4 segments of ``seconds`` at 2 fps, about 2 MB a minute."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make_clip(folder / f"segment{i}.mp4", seconds=seconds, size="960x540", audio=False, rate=2,
                      pattern=p, video_args=("-b:v", SEGMENT_BITRATE, "-maxrate", SEGMENT_BITRATE,
                                             "-bufsize", "540k", "-preset", "veryfast", "-tune", "grain"))
            for i, p in enumerate(PATTERNS)]


def summary(f: Figures, seats: int, seconds: float, segment_bytes: int) -> dict:
    """The figures a person reads: rates while the clients ran (the exam, and after its end until
    the last one had noticed it, sent what it held and finished), latencies, failures, the
    recordings."""
    tally_failed = sum(n for k, n in f.events.items() if k.startswith("connection errors"))
    ran = seconds + f.events.get("clients done (s after the end)", 0)
    return {
        "seats": seats, "token_students": f.students.get("token", 0), "seconds": seconds, "clients_ran_s": ran,
        "segment_mb": round(segment_bytes / 1e6, 2), "worker_class": f.web_worker_class,
        "heartbeats_per_s": round(f.heartbeats / ran, 1),
        "offered_heartbeats_per_s": round(2 * seats / f.options["heartbeat_s"], 1),
        "segments_per_s": round(f.segments.get("acknowledged", 0) / ran, 2),
        "screenshots_per_s": round(f.events.get("screenshots", 0) / ran, 2),
        "latency_ms": f.latency_ms, "failed_requests": f.events.get("failed answers", 0) + tally_failed,
        "segments": f.segments, "merged_after_end_s": f.events.get("merge backlog drained (s after the end)"),
        # The soak's memory bound needs a warm-up longer than a short exam: its findings apart.
        "problems": [p for p in f.problems if not memory_finding(p)],
        "memory": [p for p in f.problems if memory_finding(p)], "rss_mib": f.rss_mib,
    }


def memory_finding(problem: str) -> bool:
    return "memory sample" in problem or " grew from " in problem


def run_hall(seats: int, seconds: float, segment_s: float, heartbeat_s: float, screenshot_s: float,
             merge_timeout_s: float) -> dict:
    options = Options(students=2 * seats, minutes=seconds / 60, segment_s=segment_s, heartbeat_s=heartbeat_s,
                      idle=0, partial_headers=0, disconnect_share=0, restart_share=0, early_finish_share=0,
                      retry_share=0, cut_share=0, merge_timeout_s=merge_timeout_s)
    stack = Stack(options)
    try:
        segments = make_segments(stack.dir / "segments", segment_s)
        hall = Hall(options, stack, segments, screenshot_s)
        clients_before = sum(os.times()[:2])
        figures = hall.run()
        cpu = {"clients": sum(os.times()[:2]) - clients_before,
               "stack": sum(cpu_s(pid) for pid in stack.processes())}
        server_ms = stack.access_log_ms(HEARTBEAT_PATHS)
    finally:
        stack.stop()
    # Where the time went: the clients' own process (a thread a client) shares the two cores with
    # the stack, so what they see includes their own wait for the GIL; Gunicorn's own time of each
    # heartbeat (from its access log) does not.
    figures.latency_ms["heartbeat_server"] = [round(v, 1) for v in p50_p99(server_ms)]
    statuses = hall.tally.statuses
    figures.events["screenshots"] = sum(n for (kind, status), n in statuses.items() if kind == "other" and status < 300)
    figures.events["failed answers"] = sum(n for (_, status), n in statuses.items() if status >= 400)
    figures.latency_ms["screenshot"] = [round(v, 1) for v in hall.tally.percentiles("other")]
    return {**summary(figures, seats, seconds, segments[0].stat().st_size),
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()}}


def report(s: dict) -> str:
    lat = s["latency_ms"]
    return "\n".join([
        f"hall: {s['seats']} desktop seats + {s['token_students']} token students, {s['seconds']:g} s of exam, "
        f"segments of {s['segment_mb']} MB, gunicorn worker class {s['worker_class']}",
        f"clients ran {s['clients_ran_s']:g} s; heartbeats: {s['heartbeats_per_s']}/s answered "
        f"({s['offered_heartbeats_per_s']}/s offered), "
        f"p50/p99 {lat['heartbeat'][0]}/{lat['heartbeat'][1]} ms as the clients saw them, "
        f"{lat['heartbeat_server'][0]}/{lat['heartbeat_server'][1]} ms in Gunicorn",
        f"CPU used: the clients' process {s['cpu_s']['clients']} s, the stack's processes {s['cpu_s']['stack']} s",
        f"uploads: segments {s['segments_per_s']}/s, p50/p99 {lat['segment'][0]}/{lat['segment'][1]} ms; "
        f"screenshots {s['screenshots_per_s']}/s, p50/p99 {lat['screenshot'][0]}/{lat['screenshot'][1]} ms",
        f"failed requests: {s['failed_requests']}",
        "segments: " + ", ".join(f"{k} {v}" for k, v in s["segments"].items())
        + f"; every recording merged {s['merged_after_end_s']} s after the end",
        f"problems: {len(s['problems'])}", *(f"  {p}" for p in s["problems"][:20]),
        *(f"memory: {p}" for p in s["memory"][:20]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=3000, help="desktop seats, and as many token students")
    parser.add_argument("--seconds", type=float, default=300, help="length of the exam")
    parser.add_argument("--segment-s", type=float, default=60, help="seconds of each recorded segment")
    parser.add_argument("--heartbeat-s", type=float, default=30, help="each client's heartbeat interval")
    parser.add_argument("--screenshot-s", type=float, default=30, help="each seat's screenshot interval")
    parser.add_argument("--merge-timeout", type=float, default=1200, help="bound on the merges after the end")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if args.seats < 1 or min(args.seconds, args.segment_s, args.heartbeat_s, args.screenshot_s) <= 0:
        parser.error("need --seats >= 1 and positive durations")
    crowd_environment()
    threading.stack_size(512 * 1024)  # a thread a student: their stacks are most of this process
    figures = run_hall(args.seats, args.seconds, args.segment_s, args.heartbeat_s, args.screenshot_s,
                       args.merge_timeout)
    print(json.dumps(figures) if args.json else report(figures))


if __name__ == "__main__":
    main()
