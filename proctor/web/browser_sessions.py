"""Server-side browser sessions for the console.

The browser holds only a random id, in an HttpOnly, SameSite=Lax cookie (Secure when the request
came over HTTPS); what the session says (who signed in, the CSRF token, the chosen language) is
kept in Redis under a hash of that id, so a copy of Redis holds no cookie that would open a
session. A session expires after ``IDLE_S`` without a request (each request that reads it starts
the count again: an open live view, polling, keeps its teacher signed in) and at the latest
``MAX_AGE_S`` after it was made; signing out deletes it. Requests that send no cookie (the token
API, the desktop seats) never touch Redis here.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time

import redis
from flask import request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from .. import redis_client

COOKIE = "proctor_console"
IDLE_S = 60 * 60
MAX_AGE_S = 12 * 60 * 60
BORN = "_born"


class BrowserSession(CallbackDict, SessionMixin):
    """A session's values; ``sid`` is None until it is first stored."""

    def __init__(self, values: dict | None = None, sid: str | None = None, *, unreadable: bool = False):
        def on_update(this):
            this.modified = True

        super().__init__(values or {}, on_update)
        self.sid = sid
        self.modified = False
        self.retired: str | None = None  # an id to delete when this session is stored next
        # Redis could not be read: the console answers 503 and nothing is stored back.
        self.unreadable = unreadable

    def rotate(self) -> None:
        """A new id for the same values (at sign-in: an id known before it opens nothing after)."""
        if self.sid:
            self.retired = self.sid
        self.sid = None
        self.modified = True


def _key(sid: str) -> str:
    return redis_client.key("console", "session", hashlib.sha256(sid.encode()).hexdigest())


def _load(sid: str) -> dict | None:
    raw = redis_client.client().get(_key(sid))
    if raw is None:
        return None
    values = json.loads(raw)
    if time.time() - values.get(BORN, 0) > MAX_AGE_S:
        redis_client.client().delete(_key(sid))
        return None
    return values


class RedisSessionInterface(SessionInterface):
    def open_session(self, app, request) -> BrowserSession:
        sid = request.cookies.get(COOKIE, "")
        if not 20 <= len(sid) <= 100:
            return BrowserSession()
        try:
            values = _load(sid)
        except (redis.ConnectionError, redis.TimeoutError):
            # Raised here, Flask would answer 500 without the console's error page.
            return BrowserSession(sid=sid, unreadable=True)
        return BrowserSession(values, sid) if values is not None else BrowserSession()

    def save_session(self, app, session: BrowserSession, response) -> None:
        if session.unreadable:
            return
        if session.retired:
            redis_client.client().delete(_key(session.retired))
        if not session:
            if session.sid:  # emptied: signed out
                redis_client.client().delete(_key(session.sid))
                response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax")
            return
        if not (session.modified or session.sid is None):
            redis_client.client().expire(_key(session.sid), IDLE_S)  # idle time counts from now
            return
        fresh = session.sid is None
        session.sid = session.sid or secrets.token_urlsafe(32)
        values = {BORN: time.time(), **dict(session)}
        redis_client.client().set(_key(session.sid), json.dumps(values), ex=IDLE_S)
        if fresh:
            # No Max-Age: the browser forgets the id when it closes; the server forgets the
            # session when it has been idle (Redis' expiry), whichever comes first.
            response.set_cookie(COOKIE, session.sid, path="/", httponly=True, samesite="Lax",
                                secure=request.is_secure)
