"""The periodic status check: exam schedule and student presence.

Beat fires it every 30 s. A Redis lock guards the body so a second Beat started by mistake, or a
run slower than the period, can never double the presence events.
"""
from __future__ import annotations

import json
import logging
import time

from sqlalchemy import and_, select, update

from . import locks, presence, redis_client
from .config import settings
from .db import engine, exams, sessions, utcnow
from .sessions import mark_finished, seq_summary

log = logging.getLogger(__name__)

LOCK_TTL_S = 120


def run_status_check() -> dict:
    with locks.held("status_check", LOCK_TTL_S) as taken:
        if not taken:
            log.warning("status check skipped: another run holds the lock")
            return {"skipped": True}
        started = time.monotonic()
        result = {
            "reseeded": presence.reseed_if_lost(),
            **advance_exams(),
            "offline": presence.sweep_offline(settings().offline_after_s),
            "heartbeats_flushed": presence.flush_heartbeats(),
        }
        result["duration_s"] = round(time.monotonic() - started, 4)
        result["finished_at"] = utcnow().isoformat()
        redis_client.client().set(redis_client.key("status", "last_run"), json.dumps(result))
        return result


def advance_exams() -> dict:
    """pending → active at starts_at; → completed at ends_at, finishing what is still active."""
    now = utcnow()
    with engine().begin() as conn:
        started = conn.execute(
            update(exams)
            .where(exams.c.status == "pending", exams.c.starts_at <= now, exams.c.ends_at > now)
            .values(status="active")
        ).rowcount
        conn.execute(
            update(exams)
            .where(exams.c.status.in_(("pending", "active")), exams.c.ends_at <= now)
            .values(status="completed")
        )
        # Includes exams ended by the teacher and any whose completion was interrupted earlier.
        to_complete = conn.execute(
            select(sessions.c.exam_id)
            .join(exams, and_(exams.c.id == sessions.c.exam_id, exams.c.status == "completed"))
            .where(sessions.c.state == "active")
            .distinct()
        ).scalars().all()
    finished = sum(complete_exam(exam_id) for exam_id in to_complete)
    return {"exams_started": started, "exams_completed": len(to_complete), "sessions_finished": finished}


def complete_exam(exam_id: int) -> int:
    """Finish every session still active in a completed exam and queue its merge."""
    with engine().connect() as conn:
        active = conn.execute(
            select(sessions.c.id).where(sessions.c.exam_id == exam_id, sessions.c.state == "active")
        ).scalars().all()
    finished = 0
    for sid in active:
        next_seq = seq_summary(sid)[0]
        finished += mark_finished(sid, next_seq - 1 if next_seq else None)
    return finished


def last_run() -> dict | None:
    raw = redis_client.client().get(redis_client.key("status", "last_run"))
    return json.loads(raw) if raw else None
