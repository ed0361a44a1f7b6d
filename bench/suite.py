"""Every speed target of proctor, measured against its baseline in one run: what scripts/bench.sh runs.

Usage: .venv/bin/python bench/suite.py [--smoke] [--runs R] [--out FILE] [--only STEP,...]

Rows (each figure the median of R runs, each ratio against its baseline measured in the same run,
interleaved with it, on the same data):

- token heartbeat and seat heartbeat: wrk (bench/wrk/*.lua) against the app under the project's
  gunicorn_config.py, the requests spread over every seeded session; the baseline is
  bench/bare_app.py, a bare Flask endpoint returning 204, under the same Gunicorn settings; the
  same bare endpoint after one Redis call (its own row) shows how near that target one round trip
  to Redis lets any heartbeat come;
- upload: wrk PUTting a 5 MiB mp4 segment over 8 connections, each request a new seq; the
  baseline is the bare app's streaming PUT that hashes (SHA-256), fsyncs and keeps the same bytes;
- upload late in a session: one upload at seq 700 of a session that holds 700 segments against a
  session's first upload (a small body, so that the database work is what is compared);
- web worker RSS before and after all those uploads;
- merge: ``proctor.media.merge_segments`` (plan, FFmpeg, verification, hash, fsync) of 60 × 10 s
  720p H.264 segments described at upload, as the server's are (``proctor.segment_probes``),
  against plain ``ffmpeg -f concat -c copy`` of the same files; the row also gives the merge of
  the same files undescribed (``merge_directory``: every segment probed first);
- the exam's end: bench/exam_end.py, 500 token-API sessions of 60 × 10 s segments (uploaded and
  described as during an exam) finished at once, until every recording is merged, verified,
  recorded and its segments deleted, against plain ``ffmpeg -f concat -c copy`` of the same inputs
  two at a time, under paced heartbeats of another exam (4 × 4 × 1 s with ``--smoke``);
- status check: bench/status_check.py (100,000 sessions, nothing changed) and its full-scan baseline;
- recovery: bench/worker_recovery.py (3 runs; 1 with ``--smoke``, still about a minute: the wait
  for the dead worker's lease is the figure): the merge worker SIGKILLed mid-merge and restarted
  as its unit says, the time from the kill until the session is merged again;
- slow clients: bench/slow_clients.py with the chosen worker class, 200 uploads trickling at
  1 KiB/s (20 with ``--smoke``) against other students' heartbeats and segment uploads, each
  measured with and without them;
- a whole hall: bench/hall.py, N desktop seats at the original client's cadence plus N token-API
  students on the whole stack (``--hall-seats N,...``, default 50,300; ``--hall-seconds S``,
  default 120 (the 3,000 of the target need the clients on another machine: see the README); with ``--smoke`` 2 of each for 10 s at a 2 s cadence), one row for each N.

``--only`` runs only the named steps (heartbeats, uploads, late-upload, merge, exam-end, status, recovery,
slow-clients, hall), e.g. to
measure a change to one path before and after. ``--smoke`` runs every row on little data for a few seconds (the figures then say nothing; it
shows the command works). The stack is the benchmark's own: a private redis-server on a free port
(``BENCH_REDIS_URL`` to use another, whose db is emptied), a SQLite file in a temporary directory
(``BENCH_DATABASE_URL`` for MariaDB/MySQL: its tables are dropped), two Gunicorn workers unless
``PROCTOR_WEB_WORKERS`` says otherwise. Prints the table and writes it, with the machine and the
date, to ``--out`` (default bench/results.md; a run with ``--only`` writes it only to ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WRK_DIR = ROOT / "bench" / "wrk"
WRK_THREADS = 2
LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class Scale:
    sessions: int
    seconds: int
    connections: int
    upload_connections: int
    upload_mib: int
    late_seq: int
    late_repeats: int
    merge_segments: int
    merge_seconds: int
    merge_size: str
    status_sessions: int
    recovery_runs: int


FULL = Scale(sessions=10_000, seconds=15, connections=64, upload_connections=8, upload_mib=5, late_seq=700,
             late_repeats=30, merge_segments=60, merge_seconds=10, merge_size="1280x720", status_sessions=100_000,
             recovery_runs=3)
SMOKE = Scale(sessions=300, seconds=2, connections=16, upload_connections=4, upload_mib=1, late_seq=20,
              late_repeats=3, merge_segments=4, merge_seconds=1, merge_size="320x240", status_sessions=2_000,
              recovery_runs=1)


@dataclass
class Row:
    name: str
    figure: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None  # None: not measurable in this run

    def cells(self) -> list[str]:
        ratio = "–" if self.ratio is None else f"{self.ratio:.2f} ×"
        met = {True: "yes", False: "**no**", None: "–"}[self.met]
        return [self.name, self.figure, self.baseline, ratio, self.target, met]


# --- the stack ------------------------------------------------------------------------------------


def process(args: list[str], work: Path, log_name: str, **env: str):
    """A child process (stopped with the run, and sent SIGTERM if the run dies) logging into the
    run's directory."""
    from tests.helpers import Process

    proc = Process(args, log_name, env=env)
    proc.log_path = work / "logs" / log_name
    return proc.start()


def environment(work: Path) -> list:
    """The settings every process of the run reads (Gunicorn's workers get them from here too);
    returns the private Redis started for it, if any."""
    from tests.helpers import free_port, wait_until

    for name in ("data", "logs", "run", "prometheus", "uploads", "redis"):
        (work / name).mkdir(parents=True, exist_ok=True)
    redis_url, started = os.environ.get("BENCH_REDIS_URL"), []
    if not redis_url:
        port = free_port()
        started.append(process([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                LOCAL, "--dir", str(work / "redis"), "--save", "", "--appendonly", "no"],
                               work, "redis.log"))
        redis_url = f"redis://{LOCAL}:{port}/0"
    import redis

    wait_until(lambda: redis.Redis.from_url(redis_url).ping(), timeout=20, what="the benchmark's redis")
    os.environ.update({
        "PROCTOR_DATA_DIR": str(work / "data"),
        "PROCTOR_LOG_DIR": str(work / "logs"),
        "PROCTOR_RUN_DIR": str(work / "run"),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
        "BENCH_UPLOAD_DIR": str(work / "uploads"),
        "REDIS_URL": redis_url,
        "BENCH_REDIS_URL": redis_url,
        "PROCTOR_REDIS_PREFIX": "proctor-bench:",
        "PROCTOR_ADMIN_TOKEN": "bench-admin-token-0123456789",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{work / 'data' / 'bench.db'}",
        # wrk sends every seat's call from one address, which the per-address ceiling is there to
        # stop; a real hall comes from many. The limiter's Redis call is still made and measured.
        "PROCTOR_LEGACY_RATE_LIMIT": "100000000 per minute",
    })
    return started


def serve(app: str, work: Path, log_name: str):
    """Gunicorn with the project's gunicorn_config.py serving ``app``; (process, base URL)."""
    import requests

    from tests.helpers import BIN, free_port, wait_until

    port = free_port()
    proc = process([str(BIN / "gunicorn"), "-c", "gunicorn_config.py", app], work, log_name,
                   PROCTOR_BIND=f"{LOCAL}:{port}")
    base = f"http://{LOCAL}:{port}"
    wait_until(lambda: proc.alive() and requests.get(f"{base}/health", timeout=10).status_code, timeout=60,
               what=f"gunicorn serving {app}")
    return proc, base


def worker_rss_mib(master: int) -> float:
    """The resident memory of Gunicorn's workers, added up."""
    total = 0
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


# --- data -----------------------------------------------------------------------------------------


def seed(work: Path, n: int) -> None:
    """n active sessions of one running exam, each with a token, bound to a seat at 127.0.0.1 (in
    the database and in the seat cache, as each seat's login leaves them)."""
    from sqlalchemy import insert

    from heartbeat import prepare_tokens
    from status_check import seed as seed_sessions

    from proctor import seat_cache
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import legacy_seats
    from proctor.tokens import hash_token

    seed_sessions(n)
    tokens = prepare_tokens(n)
    now = utcnow()
    with engine().begin() as conn:
        conn.execute(insert(legacy_seats), [{"session_id": sid, "client_addr": LOCAL, "bound_at": now}
                                            for sid in tokens])
    for sid, token in tokens.items():
        seat_cache.bind(1, f"s{sid - 1}", sid, LOCAL, hash_token(token))
    (work / "sessions.txt").write_text("".join(f"{sid} {t}\n" for sid, t in tokens.items()))
    (work / "seats.txt").write_text("".join(f"s{sid - 1} 1\n" for sid in tokens))


def segment_file(path: Path, mib: int) -> Path:
    """An mp4 of ``mib`` MiB: a real one's head, then random bytes (only the head is checked)."""
    head = path.with_suffix(".head.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=320x240",
                    "-c:v", "libx264", "-preset", "ultrafast", str(head)], check=True)
    data = head.read_bytes()
    path.write_bytes(data + os.urandom(mib * 1024 * 1024 - len(data)))
    return path


# --- wrk ------------------------------------------------------------------------------------------

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(base: str, script: str, connections: int, seconds: int, **env: str) -> dict:
    """One wrk run; requests/s, p99 latency (s) and failed requests (socket errors and non-2xx)."""
    done = subprocess.run(
        ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
         "--latency", "-s", str(WRK_DIR / script), base],
        capture_output=True, text=True, check=True, env={**os.environ, "BENCH_THREADS": str(WRK_THREADS), **env})
    out = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not rate or not p99:
        raise RuntimeError(f"unexpected wrk output:\n{out}\n{done.stderr}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rate": float(rate.group(1)), "p99": float(p99.group(1)) * UNITS[p99.group(2)],
            "failed": errors + (int(non2xx.group(1)) if non2xx else 0)}


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


# --- the benchmarks -------------------------------------------------------------------------------


def heartbeats(ours: str, bare: str, ceiling: str, work: Path, scale: Scale, runs: int) -> list[Row]:
    rows = []
    for name, script, data in (("Token heartbeat", "token_heartbeat.lua", {"BENCH_SESSIONS": "sessions.txt"}),
                               ("Seat heartbeat", "seat_heartbeat.lua", {"BENCH_SEATS": "seats.txt"})):
        env = {k: str(work / v) for k, v in data.items()}
        mine, base, most = [], [], []
        for _ in range(runs):
            base.append(wrk(bare, script, scale.connections, scale.seconds, **env))
            mine.append(wrk(ours, script, scale.connections, scale.seconds, **env))
            most.append(wrk(ceiling, script, scale.connections, scale.seconds, **env))
        ratio = median_of(mine, "rate") / median_of(base, "rate")
        failed = int(sum(r["failed"] for r in mine))
        rows.append(Row(
            f"{name} ({scale.sessions:,} sessions, {scale.connections} connections)",
            f"{median_of(mine, 'rate'):,.0f}/s, p99 {median_of(mine, 'p99') * 1000:.0f} ms, {failed} failed; "
            f"{median_of(mine, 'rate') / median_of(most, 'rate'):.2f} × the bare app with one Redis call",
            f"bare Flask 204: {median_of(base, 'rate'):,.0f}/s, p99 {median_of(base, 'p99') * 1000:.0f} ms",
            ratio, "≥ 0.70 ×, 0 failed", ratio >= 0.7 and failed == 0))
        if name == "Token heartbeat":
            rows.append(ceiling_row(most, base, scale))
    return rows


def ceiling_row(most: list[dict], base: list[dict], scale: Scale) -> Row:
    """How near the heartbeat target a Flask endpoint can come at all within its budget of one
    round trip to Redis: the bare app making that one call."""
    ratio = median_of(most, "rate") / median_of(base, "rate")
    return Row(f"Bare Flask 204 after one Redis call, the heartbeat's budget ({scale.sessions:,} sessions, "
               f"{scale.connections} connections)",
               f"{median_of(most, 'rate'):,.0f}/s, p99 {median_of(most, 'p99') * 1000:.0f} ms",
               f"bare Flask 204: {median_of(base, 'rate'):,.0f}/s", ratio,
               "≥ 0.70 × (is the heartbeat target reachable?)", ratio >= 0.7)


def uploads(ours: tuple, bare: str, work: Path, scale: Scale, runs: int) -> list[Row]:
    proc, base_url = ours
    segment = segment_file(work / "segment.mp4", scale.upload_mib)
    env = {"BENCH_SESSIONS": str(work / "upload-sessions.txt"), "BENCH_SEGMENT": str(segment)}
    lines = (work / "sessions.txt").read_text().splitlines()
    (work / "upload-sessions.txt").write_text("\n".join(lines[:64]) + "\n")
    rss_before = worker_rss_mib(proc.proc.pid)
    mine, base = [], []
    for _ in range(runs):
        base.append(wrk(bare, "upload.lua", scale.upload_connections, scale.seconds, **env))
        remove_uploads()
        mine.append(wrk(base_url, "upload.lua", scale.upload_connections, scale.seconds, **env))
        remove_uploads()
    rss_after = worker_rss_mib(proc.proc.pid)
    size = segment.stat().st_size
    uploaded_gib = sum(r["rate"] for r in mine) * scale.seconds * size / 2**30
    ratio = median_of(mine, "rate") / median_of(base, "rate")
    failed = int(sum(r["failed"] for r in mine))
    label = f"{scale.upload_mib} MiB segment upload, {scale.upload_connections} at once"
    return [
        Row(label,
            f"{median_of(mine, 'rate') * size / 1e6:,.0f} MB/s, p99 {median_of(mine, 'p99') * 1000:.0f} ms, "
            f"{failed} failed",
            f"bare PUT + SHA-256 + fsync, kept: {median_of(base, 'rate') * size / 1e6:,.0f} MB/s",
            ratio, "≥ 0.80 ×, 0 failed", ratio >= 0.8 and failed == 0),
        Row(f"Web workers' RSS over {uploaded_gib:.1f} GiB uploaded",
            f"{rss_after:,.0f} MiB after", f"{rss_before:,.0f} MiB before", rss_after / rss_before,
            "≤ 1.20 × (flat)", rss_after / rss_before <= 1.2),
    ]


def remove_uploads() -> None:
    """Each run stores new files: the disk another run filled is not what is measured."""
    shutil.rmtree(Path(os.environ["PROCTOR_DATA_DIR"]) / "segments", ignore_errors=True)
    for kept in Path(os.environ["BENCH_UPLOAD_DIR"]).iterdir():
        kept.unlink()
    os.sync()


def late_upload(base_url: str, work: Path, scale: Scale) -> Row:
    """Seq ``late_seq`` of a session holding that many segments against a session's first upload."""
    import requests
    from sqlalchemy import insert

    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import segments

    lines = (work / "sessions.txt").read_text().splitlines()
    late = lines[100].split()
    fresh = [line.split() for line in lines[101:101 + scale.late_repeats]]
    now = utcnow()
    with engine().begin() as conn:
        conn.execute(insert(segments), [
            {"session_id": int(late[0]), "run": 0, "seq": seq, "size": 1, "sha256": "0" * 64,
             "media_type": "video/mp4", "received_at": now} for seq in range(scale.late_seq)])
    body = (work / "segment.mp4").read_bytes()[:64 * 1024]
    http = requests.Session()

    def put(sid: str, token: str, seq: int) -> float:
        started = time.perf_counter()
        r = http.put(f"{base_url}/api/sessions/{sid}/segments/{seq}", data=body, timeout=60,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"})
        took = time.perf_counter() - started
        if r.status_code != 201:
            raise RuntimeError(f"upload answered {r.status_code}: {r.text}")
        return took

    put(*fresh[0], 1)  # the workers' first upload opens what later ones reuse: not measured
    put(*fresh[0], 2)
    first, later = [], []
    for n, (sid, token) in enumerate(fresh):
        first.append(put(sid, token, 0))
        later.append(put(late[0], late[1], scale.late_seq + n))
    ratio = statistics.median(later) / statistics.median(first)
    return Row(f"Upload late in a session (seq {scale.late_seq} after {scale.late_seq} stored)",
               f"{statistics.median(later) * 1000:.1f} ms", f"a session's first upload: "
               f"{statistics.median(first) * 1000:.1f} ms", ratio, "≤ 1.20 × (constant work)", ratio <= 1.2)


def merge(work: Path, scale: Scale, runs: int) -> Row:
    from proctor.media import Segment, merge_directory, merge_segments, probe

    folder = work / "merge"
    folder.mkdir()
    one = work / "merge-one.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=duration={scale.merge_seconds}:size={scale.merge_size}:rate=30",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p", str(one)],
                   check=True)
    names = [folder / f"{n:04d}.mp4" for n in range(scale.merge_segments)]
    for name in names:
        shutil.copyfile(one, name)
    listing = work / "concat.txt"
    listing.write_text("".join(f"file '{name}'\n" for name in names))
    total_mb = sum(n.stat().st_size for n in names) / 1e6
    # The server describes each segment when it arrives (segment_probes), during the exam: the
    # merge at the exam's end starts from those descriptions, made here before the clock starts.
    described = [Segment(seq=n, path=name, probe=probe(name)) for n, name in enumerate(names)]
    mine, base, cold = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-c", "copy", str(work / "plain.mp4")], check=True)
        base.append(time.perf_counter() - started)
        (work / "plain.mp4").unlink()
        started = time.perf_counter()
        report = merge_segments(described, work / "merged.mp4")
        mine.append(time.perf_counter() - started)
        report.output.unlink()
        if report.method != "concat-copy" or report.skipped or report.plan != "stored":
            raise RuntimeError(f"the merge did not copy every described segment: {report}")
        started = time.perf_counter()
        report = merge_directory(folder, work / "merged.mp4")  # nothing described: every segment probed
        cold.append(time.perf_counter() - started)
        report.output.unlink()
    ratio = statistics.median(mine) / statistics.median(base)
    return Row(f"Merge of {scale.merge_segments} × {scale.merge_seconds} s {scale.merge_size} mp4 "
               f"({total_mb:,.0f} MB), verified; segments described at upload (undescribed: "
               f"{statistics.median(cold):.2f} s)", f"{statistics.median(mine):.2f} s",
               f"ffmpeg -f concat -c copy: {statistics.median(base):.2f} s", ratio, "≤ 1.20 ×", ratio <= 1.2)


def status_check(scale: Scale, runs: int) -> Row:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # a SQLite file of its own
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "status_check.py"), "--sessions",
                          str(scale.status_sessions), "--repeat", str(max(runs, 3))],
                         capture_output=True, text=True, check=True, env=env, cwd=ROOT).stdout
    ours = float(re.search(r"status check, nothing changed: median ([\d.]+) ms", out).group(1))
    base = float(re.search(r"baseline full scan:\s+median ([\d.]+) ms", out).group(1))
    return Row(f"Status check ({scale.status_sessions:,} sessions, nothing changed)", f"{ours:.1f} ms",
               f"full scan of the sessions: {base:.1f} ms", ours / base, "< 500 ms", ours < 500)


def recovery(scale: Scale) -> Row:
    """bench/worker_recovery.py on this run's Redis (a db of its own, which it empties) and its own
    SQLite file: the merge worker SIGKILLed mid-merge and restarted as its unit says."""
    redis_db = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/1"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "worker_recovery.py"), "--runs",
                          str(scale.recovery_runs)], capture_output=True, text=True, check=True,
                         env={**env, "TEST_REDIS_URL": redis_db}, cwd=ROOT).stdout
    medians = json.loads(out[out.index("{"):])["medians"]
    killed, clean = medians["kill_to_merged_s"], medians["clean_merge_s"]
    return Row("Merge worker SIGKILLed mid-merge, restarted by its unit: merged again", f"{killed:.1f} s after the kill",
               f"the same merge undisturbed: {clean:.1f} s", killed / clean, "≤ 45 s after the kill",
               killed <= 45)


def slow_clients(smoke: bool) -> Row:
    """bench/slow_clients.py, the chosen worker class only, on this run's Redis (a prefix of its
    own) and its own SQLite file: honest students while uploads trickle at 1 KiB/s, and without."""
    trickling = 20 if smoke else 200
    size = ["--seconds", "3", "--warmup", "1", "--settle", "1", "--repeat", "1"] if smoke else ["--repeat", "3"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL")}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "slow_clients.py"), "--idle", "0", "--trickle", "0",
                          "--trickle-uploads", str(trickling), "--workers", "proctor.serving.PacedGeventWorker",
                          "--json", *size], capture_output=True, text=True, check=True, env=env, cwd=ROOT).stdout
    measured = json.loads(out.strip().splitlines()[-1])["PacedGeventWorker"]
    quiet, attacked = measured["quiet"], measured["attacked"]
    ratio = attacked["upload_mb_s"] / quiet["upload_mb_s"]
    p99 = attacked["p99"] * 1000
    return Row(f"Slow clients: {trickling} uploads trickling at 1 KiB/s; other students' heartbeats and their "
               f"1 MiB uploads", f"heartbeat p99 {p99:.0f} ms, {attacked['failed']:.1%} failed; uploads "
               f"{attacked['upload_mb_s']:.0f} MB/s", f"none trickling: heartbeat p99 {quiet['p99'] * 1000:.0f} ms; "
               f"uploads {quiet['upload_mb_s']:.0f} MB/s", ratio, "p99 < 200 ms, uploads ≥ 0.50 × untroubled",
               p99 < 200 and ratio >= 0.5 and attacked["failed"] == 0)


def exam_end(smoke: bool) -> Row:
    """bench/exam_end.py on a stack of its own: every session of an exam finished at once and merged,
    against plain ffmpeg -f concat -c copy of the same segments two at a time."""
    size = ["--sessions", "4", "--segments", "4", "--seconds", "1"] if smoke else []
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "exam_end.py"), "--json", *size],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return exam_end_row(json.loads(out.strip().splitlines()[-1]))


def exam_end_row(e: dict) -> Row:
    """The row of one bench/exam_end.py run from its JSON figures."""
    during, alone = e["heartbeat_during_merges"], e["heartbeat_after_finish_calls"]
    return Row(f"The exam's end: {e['sessions']:,} sessions × {e['segments']} × {e['seconds']:g} s segments "
               "finished and merged at once",
               f"{e['merged_s']:.1f} s until every recording is merged, verified, recorded and its segments "
               f"deleted; heartbeats ({e['heartbeats_per_s']:g}/s) p99 {during['p99_ms']:.0f} ms, "
               f"{alone['p99_ms']:.0f} ms once the {e['sessions']:,} finish calls were answered "
               f"({e['finish_calls_s']:.1f} s); {during['failed']} failed",
               f"plain ffmpeg -f concat -c copy, 2 at a time: {e['plain_ffmpeg_s']:.1f} s", e["ratio"],
               "≤ 1.20 ×, heartbeat p99 < 200 ms",
               e["ratio"] <= 1.2 and during["p99_ms"] < 200 and during["failed"] == 0)


def hall(seats: int, seconds: float, smoke: bool) -> Row:
    """bench/hall.py: ``seats`` desktop seats and as many token students on a stack of its own."""
    cadence = ["--segment-s", "2", "--heartbeat-s", "2", "--screenshot-s", "2"] if smoke else []
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "hall.py"), "--seats", str(seats), "--seconds",
                          f"{seconds:g}", "--json", *cadence], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    return hall_row(json.loads(out.strip().splitlines()[-1]), smoke)


def hall_row(h: dict, smoke: bool = False) -> Row:
    """The row of one hall run from bench/hall.py's JSON figures."""
    seats, seconds = h["seats"], h["seconds"]
    beat, segment, shot, server = (h["latency_ms"][k] for k in ("heartbeat", "segment", "screenshot", "heartbeat_server"))
    seg = h["segments"]
    all_merged = seg["sent"] == seg["acknowledged"] == seg["merged"] > 0
    ratio = h["heartbeats_per_s"] / h["offered_heartbeats_per_s"]
    drained = h["merged_after_end_s"]
    return Row(f"A whole hall: {seats:,} seats + {seats:,} token students, {seconds:g} s of exam at "
               + ("a 2 s cadence" if smoke else f"the original client's cadence ({h['segment_mb']} MB segments)"),
               f"heartbeats {h['heartbeats_per_s']:,}/s p50/p99 {beat[0]:.0f}/{beat[1]:.0f} ms (in Gunicorn "
               f"{server[0]:.0f}/{server[1]:.0f} ms); uploads "
               f"{h['segments_per_s'] + h['screenshots_per_s']:,.1f}/s (segments p99 {segment[1]:.0f} ms, screenshots "
               f"p99 {shot[1]:.0f} ms); {h['failed_requests']} failed; {seg['merged']:,}/{seg['acknowledged']:,} "
               + (f"segments merged, {drained} s after the end" if drained is not None else
                  "segments merged within the bound")
               + f"; CPU: clients {h['cpu_s']['clients']:,.0f} s, stack {h['cpu_s']['stack']:,.0f} s",
               f"heartbeats offered: {h['offered_heartbeats_per_s']:,}/s", ratio,
               "heartbeat p99 < 200 ms, 0 failed, every segment merged, at ≥ 3,000 seats",
               beat[1] < 200 and h["failed_requests"] == 0 and all_merged and not h["problems"] and seats >= 3000)


# --- the report -----------------------------------------------------------------------------------


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"{'MariaDB/MySQL' if 'mysql' in os.environ['DATABASE_URL'] else 'SQLite'}")


def table(rows: list[Row]) -> str:
    head = ["benchmark", "figure", "baseline (same run)", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def report(rows: list[Row], args, started: datetime) -> str:
    mode = "smoke run (little data, a few seconds: the figures say nothing)" if args.smoke else "full run"
    if args.only != STEPS:
        mode += f" of {', '.join(sorted(args.only))} only"
    return (f"# Benchmark results\n\n"
            f"`scripts/bench.sh{' --smoke' if args.smoke else ''}`, {mode}, "
            f"{started:%Y-%m-%d %H:%M} UTC, {(datetime.now(timezone.utc) - started).seconds // 60} min.\n\n"
            f"Machine: {machine()}.\n\n"
            f"Each figure is the median of {args.runs} runs, each ratio against its baseline measured in the "
            f"same run, interleaved with it. wrk {WRK_THREADS} threads on the same machine as the server.\n\n"
            + table(rows))


STEPS = frozenset({"heartbeats", "uploads", "late-upload", "merge", "exam-end", "status", "recovery", "slow-clients",
                   "hall"})


def _steps(text: str) -> frozenset[str]:
    steps = frozenset(s.strip() for s in text.split(",") if s.strip())
    if not steps or steps - STEPS:
        raise argparse.ArgumentTypeError(f"steps are among {', '.join(sorted(STEPS))}, not {text!r}")
    return steps


def _counts(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"whole numbers from 1, comma-separated, not {text!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every row on little data, a few seconds each")
    parser.add_argument("--runs", type=int, default=None, help="runs of each benchmark (default 3, smoke 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the table goes (default bench/results.md; with --only, nowhere)")
    parser.add_argument("--only", type=_steps, default=STEPS,
                        help=f"comma-separated steps to run (default all: {','.join(sorted(STEPS))})")
    parser.add_argument("--hall-seats", type=_counts, default=None,
                        help="comma-separated N of the hall step (default 50,300; smoke 2)")
    parser.add_argument("--hall-seconds", type=float, default=None, help="exam length of the hall step "
                        "(default 120; smoke 10)")
    args = parser.parse_args()
    args.runs = args.runs or (2 if args.smoke else 3)
    args.hall_seats = args.hall_seats or ([2] if args.smoke else [50, 300])
    args.hall_seconds = args.hall_seconds or (10 if args.smoke else 120)
    scale = SMOKE if args.smoke else FULL
    started = datetime.now(timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="proctor-bench-"))
    servers = environment(work)
    rows = []
    try:
        if args.only & {"heartbeats", "uploads", "late-upload"}:
            print(f"seeding {scale.sessions:,} sessions", flush=True)
            seed(work, scale.sessions)
            ours = serve("server:app", work, "gunicorn-proctor.log")
            bare = serve("bench.bare_app:app", work, "gunicorn-bare.log")
            ceiling = serve("bench.bare_app:one_redis_call", work, "gunicorn-one-redis-call.log")
            servers += [ours[0], bare[0], ceiling[0]]
            for step, run in (("heartbeats", lambda: heartbeats(ours[1], bare[1], ceiling[1], work, scale,
                                                                args.runs)),
                              ("uploads", lambda: uploads(ours, bare[1], work, scale, args.runs)),
                              ("late-upload", lambda: [late_upload(ours[1], work, scale)])):
                if step in args.only:
                    print(f"measuring {step}", flush=True)
                    rows += run()
            for server in (ours, bare, ceiling):
                server[0].stop()
        if "merge" in args.only:
            print("measuring the merge", flush=True)
            rows.append(merge(work, scale, args.runs))
        if "exam-end" in args.only:
            print("measuring the exam's end", flush=True)
            rows.append(exam_end(args.smoke))
        if "status" in args.only:
            print("measuring the status check", flush=True)
            rows.append(status_check(scale, args.runs))
        if "recovery" in args.only:
            print("measuring the recovery of a killed merge", flush=True)
            rows.append(recovery(scale))
        if "slow-clients" in args.only:
            print("measuring other students' calls while uploads trickle", flush=True)
            rows.append(slow_clients(args.smoke))
        if "hall" in args.only:
            for seats in args.hall_seats:
                print(f"measuring a whole hall of {seats:,} seats and {seats:,} token students", flush=True)
                rows.append(hall(seats, args.hall_seconds, args.smoke))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work / "merge", ignore_errors=True)
    # A partial run does not replace the table of a full one unless told where to write.
    out = args.out or (ROOT / "bench" / "results.md" if args.only == STEPS else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report(rows, args, started))
    print("\n" + table(rows) + (f"\nwritten to {out}" if out else "") + f" (logs: {work / 'logs'})")


if __name__ == "__main__":
    main()
