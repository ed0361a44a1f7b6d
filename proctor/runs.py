"""What the last status check did, kept in Redis for ``/stats`` and ``/metrics``.

Apart from ``status`` so that reading it (a metrics scrape) loads nothing of the domain.
"""
from __future__ import annotations

import json

from . import redis_client


def _key() -> str:
    return redis_client.key("status", "last_run")


def save_status_check(result: dict) -> None:
    redis_client.client().set(_key(), json.dumps(result))


def last_status_check() -> dict | None:
    raw = redis_client.client().get(_key())
    return json.loads(raw) if raw else None
