"""What the last status check did, kept in Redis for ``/stats`` and ``/metrics``.

Apart from ``status`` so that reading it (a metrics scrape) loads nothing of the domain.
"""
from __future__ import annotations

import json

from . import redis_client


# How many past checks ``recent_status_checks`` keeps: enough to see an overlap or a stall.
HISTORY = 100


def _key() -> str:
    return redis_client.key("status", "last_run")


def _history_key() -> str:
    return redis_client.key("status", "runs")


def save_status_check(result: dict) -> None:
    text = json.dumps(result)
    pipe = redis_client.client().pipeline()
    pipe.set(_key(), text)
    pipe.lpush(_history_key(), text)
    pipe.ltrim(_history_key(), 0, HISTORY - 1)
    pipe.execute()


def recent_status_checks() -> list[dict]:
    """The last checks, newest first (each with its ``started_at``, ``finished_at`` and ``pid``)."""
    return [json.loads(raw) for raw in redis_client.client().lrange(_history_key(), 0, -1)]


def last_status_check() -> dict | None:
    raw = redis_client.client().get(_key())
    return json.loads(raw) if raw else None
