"""This process's Redis client and the key names proctor uses.

Every key carries ``PROCTOR_REDIS_PREFIX`` so that tests (and several deployments sharing one
Redis) never collide.
"""
from __future__ import annotations

import os

import redis

from .config import settings

_client: redis.Redis | None = None
_client_key: tuple[int, str] | None = None


def client() -> redis.Redis:
    """This process's client, made anew after a fork and when the settings name another Redis."""
    global _client, _client_key
    key = (os.getpid(), settings().redis_url)
    if _client is None or _client_key != key:
        _client = redis.Redis.from_url(
            key[1],
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        _client_key = key
    return _client


def key(*parts: object) -> str:
    return settings().redis_prefix + ":".join(str(p) for p in parts)
