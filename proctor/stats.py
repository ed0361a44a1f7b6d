"""What an operator reads from ``GET /stats``: backlogs, workers, sessions, merges, failures."""
from __future__ import annotations

from sqlalchemy import func, select

from . import redis_client, status
from .db import engine, recordings, sessions

QUEUES = ("status_check", "video_merge")


def queue_backlog() -> dict[str, int]:
    """The ``LLEN`` of each Celery queue (the broker is the Redis at REDIS_URL)."""
    r = redis_client.client()
    return {queue: r.llen(queue) for queue in QUEUES}


def status_last_run() -> dict | None:
    return status.last_run()


def workers_online(timeout: float = 1.0) -> list[str]:
    from celery_config import celery_app

    replies = celery_app.control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)


def recordings_by_status() -> dict[str, int]:
    with engine().connect() as conn:
        return dict(conn.execute(select(recordings.c.status, func.count()).group_by(recordings.c.status)).all())


def snapshot() -> dict:
    by_outcome = recordings_by_status()
    with engine().connect() as conn:
        by_state = dict(conn.execute(select(sessions.c.state, func.count()).group_by(sessions.c.state)).all())
        failures = conn.execute(
            select(recordings.c.session_id, recordings.c.error, recordings.c.attempts, recordings.c.updated_at)
            .where(recordings.c.status == "failed")
            .order_by(recordings.c.updated_at.desc())
            .limit(20)
        ).all()
    return {
        "queues": queue_backlog(),
        "workers": workers_online(),
        "sessions_by_state": by_state,
        "merges_by_outcome": by_outcome,
        "last_status_check": status_last_run(),
        "recent_failures": [
            {"session_id": f.session_id, "error": f.error, "attempts": f.attempts, "at": f.updated_at.isoformat()}
            for f in failures
        ],
    }
