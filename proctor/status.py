"""The periodic status check: exam schedule and student presence.

Beat fires it every 30 s. A Redis lease guards the body so a second Beat started by mistake, or a
run slower than the period, never runs it twice at once: renewed while the check runs, it holds
however long a check takes, and a status worker killed mid-check frees it within its ttl.
"""
from __future__ import annotations

import logging
import os
import time

from . import lifecycle, locks, presence, runs
from .clock import utcnow
from .config import settings

log = logging.getLogger(__name__)

LOCK_TTL_S = 30


def run_status_check() -> dict:
    with locks.held("status_check", LOCK_TTL_S, renewed=True) as taken:
        if not taken:
            log.warning("status check skipped: another run holds the lock")
            return {"skipped": True}
        started = time.monotonic()
        started_at = utcnow().isoformat()
        result = {
            "reseeded": presence.reseed_if_lost(),
            **lifecycle.advance_exams(),
            "offline": presence.sweep_offline(settings().offline_after_s),
            "heartbeats_flushed": presence.flush_heartbeats(),
        }
        result["duration_s"] = round(time.monotonic() - started, 4)
        result.update(started_at=started_at, finished_at=utcnow().isoformat(), pid=os.getpid())
        runs.save_status_check(result)
        return result
