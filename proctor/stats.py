"""What an operator reads from ``GET /stats``: backlogs, workers, sessions, merges, failures."""
from __future__ import annotations

from sqlalchemy import func, select

from . import redis_client, runs, states
from .db import engine
from .schema import recordings, sessions
from .worker import QUEUES, celery_app


def queue_backlog() -> dict[str, int]:
    """The ``LLEN`` of each Celery queue (the broker is the Redis at REDIS_URL)."""
    r = redis_client.client()
    return {queue: r.llen(queue) for queue in QUEUES}


def workers_online(timeout: float = 1.0) -> list[str]:
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
            .where(recordings.c.status == states.FAILED)
            .order_by(recordings.c.updated_at.desc())
            .limit(20)
        ).all()
    return {
        "queues": queue_backlog(),
        "workers": workers_online(),
        "sessions_by_state": by_state,
        "merges_by_outcome": by_outcome,
        "last_status_check": runs.last_status_check(),
        "recent_failures": [
            {"session_id": f.session_id, "error": f.error, "attempts": f.attempts, "at": f.updated_at.isoformat()}
            for f in failures
        ],
    }
