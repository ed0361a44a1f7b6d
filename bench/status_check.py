"""Benchmark: the status check with 100,000 active sessions and nothing changed.

Usage: .venv/bin/python bench/status_check.py [--sessions N] [--repeat R]

Seeds N active sessions (database + Redis presence set, all heartbeating, all flushed), then times
`proctor.status.run_status_check()` R times. The baseline, measured in the same run on the same
data, is what the original system did every 30 s: read every active session's last heartbeat from
the database and compare it in Python. Prints medians and their ratio.

Uses a temporary SQLite database unless DATABASE_URL is set, and Redis db 13 of the local server
(BENCH_REDIS_URL to change) with its own key prefix; both are emptied first.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure() -> None:
    work = Path(tempfile.mkdtemp(prefix="proctor-bench-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.db'}")
    os.environ["PROCTOR_DATA_DIR"] = str(work)
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    os.environ["PROCTOR_REDIS_PREFIX"] = "proctor-bench:"
    os.environ.setdefault("PROCTOR_ADMIN_TOKEN", "bench")


def seed(n: int) -> None:
    import subprocess

    from sqlalchemy import insert, text

    from proctor import redis_client
    from proctor.db import engine, make_engine
    from proctor.schema import exams, metadata, sessions

    redis_client.client().flushdb()
    eng = make_engine(os.environ["DATABASE_URL"])
    with eng.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    eng.dispose()
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, check=True, capture_output=True)
    now = datetime.now(timezone.utc)
    with engine().begin() as conn:
        conn.execute(insert(exams).values(
            id=1, title="bench", starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=2),
            scheduled_ends_at=now + timedelta(hours=2), status="active", roster_restricted=False, created_at=now,
        ))
        for start in range(0, n, 10_000):
            conn.execute(insert(sessions), [
                {"id": i + 1, "exam_id": 1, "student_id": f"s{i}", "token_hash": f"{i:064x}", "state": "active",
                 "presence": "online", "joined_at": now, "last_heartbeat_at": now}
                for i in range(start, min(n, start + 10_000))
            ])
    r = redis_client.client()
    hb = redis_client.key("presence", "heartbeats")
    ts = time.time()
    pipe = r.pipeline(transaction=False)
    for start in range(0, n, 10_000):
        pipe.zadd(hb, {str(i + 1): ts for i in range(start, min(n, start + 10_000))})
    pipe.set(redis_client.key("presence", "seeded"), "1")
    pipe.set(redis_client.key("presence", "flushed_at"), ts + 1)
    pipe.execute()


def naive_scan(offline_after_s: int = 60) -> int:
    """The original design's check: every active session's heartbeat from the database."""
    from sqlalchemy import select

    from proctor.db import engine
    from proctor.schema import sessions

    cutoff = datetime.now(timezone.utc) - timedelta(seconds=offline_after_s)
    with engine().connect() as conn:
        rows = conn.execute(
            select(sessions.c.id, sessions.c.last_heartbeat_at).where(sessions.c.state == "active")
        ).all()
    return sum(1 for _, at in rows if at is None or at < cutoff)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    configure()
    from proctor import status

    seed(args.sessions)
    check = timed(status.run_status_check, args.repeat)
    result = status.run_status_check()
    assert result["offline"] == [] and result["heartbeats_flushed"] == 0, result
    baseline = timed(naive_scan, args.repeat)
    ours, base = statistics.median(check), statistics.median(baseline)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, db {os.environ['DATABASE_URL'].split(':')[0]}")
    print(f"sessions: {args.sessions}, repeats: {args.repeat}")
    print(f"status check, nothing changed: median {ours * 1000:.1f} ms")
    print(f"baseline full scan:            median {base * 1000:.1f} ms")
    print(f"ratio (status check / baseline): {ours / base:.4f}")


if __name__ == "__main__":
    main()
