"""What every raw-body upload of the token API shares: its length, its capture time, and
reading the rest of a refused body."""
from __future__ import annotations

from datetime import datetime

from flask import request

from ..errors import BadRequest, LengthRequired, TooLarge
from ..storage import CHUNK
from .validation import from_epoch_ms


def body_length(limit: int, what: str) -> int:
    """The body's Content-Length, checked before a byte of it is read."""
    if request.content_length is None:
        raise LengthRequired("a Content-Length header is required")
    if request.content_length > limit:
        raise TooLarge(f"a {what} may be at most {limit} bytes")
    if request.content_length == 0:
        raise BadRequest(f"the {what} is empty", code="empty_body")
    return request.content_length


def captured_at_header() -> datetime | None:
    raw = request.headers.get("X-Captured-At")
    if raw is None:
        return None
    try:
        return from_epoch_ms(int(raw.strip()))
    except (ValueError, OverflowError, OSError):
        raise BadRequest("X-Captured-At must be epoch milliseconds", code="invalid_header") from None


def drain(stream) -> None:
    """Read what is left of a refused body (bounded: its length was checked before).

    Answering while the client is still sending makes the server close a half-read connection;
    the client then sees a reset instead of our answer and cannot tell why it failed.
    """
    while stream.read(CHUNK):
        pass
