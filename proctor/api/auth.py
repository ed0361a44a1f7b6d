"""Who is calling: the teacher (admin bearer token) or the student owning a session."""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import g, request

from ..config import settings
from ..errors import Forbidden, Unauthorized
from ..tokens import hash_token, session_for_token

# Tokens in URLs end up in access logs, proxies and browser history: refuse them outright.
QUERY_TOKEN_NAMES = ("token", "access_token", "auth", "authorization")


@dataclass(frozen=True)
class Caller:
    is_teacher: bool
    session_id: int | None = None


def _header_token() -> str:
    """The Bearer token of the Authorization header, or ""."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _is_admin_token(token: str) -> bool:
    return hmac.compare_digest(token.encode(), settings().admin_token.encode())


def _bearer() -> str:
    if any(name in request.args for name in QUERY_TOKEN_NAMES):
        raise Unauthorized("tokens are accepted only in the Authorization header")
    token = _header_token()
    if not token:
        raise Unauthorized("missing Authorization: Bearer token")
    return token


def caller() -> Caller:
    if "caller" not in g:
        token = _bearer()
        if _is_admin_token(token):
            g.caller = Caller(is_teacher=True)
        else:
            g.caller = Caller(is_teacher=False, session_id=session_for_token(token))
    return g.caller


def student_token_hash() -> str | None:
    """The hash of the call's student token, for a call that checks it against the token cache
    itself (the heartbeat); None for the teacher's token."""
    token = _bearer()
    return None if _is_admin_token(token) else hash_token(token)


def is_teacher() -> bool:
    """Whether the call carries the teacher token; never raises (for answers that only say more
    to the teacher)."""
    token = _header_token()
    return bool(token) and _is_admin_token(token)


def require_teacher() -> None:
    if not caller().is_teacher:
        raise Forbidden("this call needs the teacher token")


def require_session(session_id: int, *, teacher_ok: bool) -> Caller:
    who = caller()
    if who.is_teacher:
        if not teacher_ok:
            raise Forbidden("this call needs the student's session token")
        return who
    if who.session_id != session_id:
        raise Forbidden("this token belongs to another session")
    return who
