"""Benchmark: the server-side work of one heartbeat.

Usage: .venv/bin/python bench/heartbeat.py [--sessions N] [--beats B] [--repeat R]

Ours: one Lua call that checks the bearer token's cache entry and records the beat in the presence
sorted set — no database access, one Redis round trip. The baseline, measured in the same run on the same data, is
what the original server did per heartbeat: update the session row, append an online-history row
and set a Redis key. Prints the median time per heartbeat of each and their ratio.

Uses a temporary SQLite database unless DATABASE_URL is set, and Redis db 13 of the local server
(BENCH_REDIS_URL to change) with its own key prefix; both are emptied first.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from status_check import configure, seed  # noqa: E402 - same data set-up as the status benchmark


def ours(session_ids: list[int], tokens: dict[int, str]) -> None:
    from proctor import presence
    from proctor.tokens import hash_token

    for sid in session_ids:
        assert presence.heartbeat(sid, hash_token(tokens[sid])) is True


def baseline(session_ids: list[int], _tokens) -> None:
    from sqlalchemy import insert, update

    from proctor import redis_client
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import presence_events, sessions

    r = redis_client.client()
    for sid in session_ids:
        now = utcnow()
        with engine().begin() as conn:
            conn.execute(update(sessions).where(sessions.c.id == sid).values(last_heartbeat_at=now))
            conn.execute(insert(presence_events).values(session_id=sid, kind="online", at=now))
        r.set(redis_client.key("hb", sid), now.isoformat())


def prepare_tokens(n: int) -> dict[int, str]:
    """Give every seeded session a real token, as join would."""
    from sqlalchemy import bindparam, update

    from proctor import redis_client
    from proctor.tokens import hash_token
    from proctor.db import engine
    from proctor.schema import sessions as table

    tokens = {sid: f"token-{sid}" for sid in range(1, n + 1)}
    with engine().begin() as conn:
        conn.execute(
            update(table).where(table.c.id == bindparam("sid")).values(token_hash=bindparam("h")),
            [{"sid": sid, "h": hash_token(t)} for sid, t in tokens.items()],
        )
    pipe = redis_client.client().pipeline(transaction=False)
    for sid, t in tokens.items():
        pipe.set(redis_client.key("token", hash_token(t)), sid)
    pipe.execute()
    return tokens


def timed(fn, ids, tokens, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(ids, tokens)
        out.append((time.perf_counter() - started) / len(ids))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--beats", type=int, default=2_000, help="heartbeats per timed batch")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure()
    seed(args.sessions)
    tokens = prepare_tokens(args.sessions)
    ids = random.Random(1).sample(range(1, args.sessions + 1), args.beats)
    mine = statistics.median(timed(ours, ids, tokens, args.repeat))
    base = statistics.median(timed(baseline, ids, tokens, args.repeat))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, db {os.environ['DATABASE_URL'].split(':')[0]}")
    print(f"sessions: {args.sessions}, heartbeats per batch: {args.beats}, batches: {args.repeat}")
    print(f"heartbeat (Redis only):          median {mine * 1e6:.0f} us")
    print(f"baseline (database write + Redis): median {base * 1e6:.0f} us")
    print(f"ratio (heartbeat / baseline): {mine / base:.3f}")


if __name__ == "__main__":
    main()
