"""This process's Redis client and the key names proctor uses.

Every key carries ``PROCTOR_REDIS_PREFIX`` so that tests (and several deployments sharing one
Redis) never collide.
"""
from __future__ import annotations

import os

import redis

from .config import settings

_client: redis.Redis | None = None
_client_pid: int | None = None


def client() -> redis.Redis:
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(
            settings().redis_url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        _client_pid = os.getpid()
    return _client


def key(*parts: object) -> str:
    return settings().redis_prefix + ":".join(str(p) for p in parts)
