"""Session tokens: what a student's bearer token proves, cached in Redis.

Only the SHA-256 of a token is stored. The cache maps it to its session so an authenticated call
(a heartbeat above all) needs no database read; a resumed session's old token is dropped from it.
"""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from . import redis_client
from .db import engine
from .errors import Unauthorized
from .schema import sessions

CACHE_TTL_S = 24 * 3600


def new_token() -> tuple[str, str]:
    """A fresh token and its hash (the hash is what the database keeps)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cache_key(token_hash: str) -> str:
    """The Redis key caching a token's session id (a heartbeat checks it in its own script)."""
    return redis_client.key("token", token_hash)


def remember(token_hash: str, session_id: int, replaces: str | None = None) -> None:
    """Cache a session's new token; the one it replaces stops authenticating at once."""
    r = redis_client.client()
    if replaces:
        r.delete(cache_key(replaces))
    r.set(cache_key(token_hash), session_id, ex=CACHE_TTL_S)


def forget(token_hashes: list[str]) -> None:
    """Drop tokens from the cache so sessions deleted from the database stop authenticating."""
    if token_hashes:
        redis_client.client().delete(*[cache_key(h) for h in token_hashes])


def session_for_token(token: str) -> int:
    token_hash = hash_token(token)
    r = redis_client.client()
    cached = r.get(cache_key(token_hash))
    if cached:
        return int(cached)
    with engine().connect() as conn:
        sid = conn.execute(select(sessions.c.id).where(sessions.c.token_hash == token_hash)).scalar()
    if sid is None:
        raise Unauthorized("invalid or revoked session token")
    r.set(cache_key(token_hash), sid, ex=CACHE_TTL_S)
    return sid
