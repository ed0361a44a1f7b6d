"""What every upload shares, on both front doors: its length (one rule), its capture time, and
reading the rest of a refused body."""
from __future__ import annotations

from datetime import datetime

from flask import request

from ..clock import from_epoch_ms
from ..errors import BadRequest, LengthRequired, TooLarge
from ..storage import CHUNK, check_size
from .validation import M, parse


def body_length(limit: int, what: str, *, framing: int = 0) -> int:
    """The body's Content-Length, checked before a byte of it is read.

    ``framing`` is room for a multipart body's form fields and boundaries around the file, whose
    own size is checked once the part is parsed; werkzeug then stops parsing beyond the total.
    """
    length = request.content_length
    if length is None:
        raise LengthRequired("a Content-Length header is required")
    if not framing:
        return check_size(length, limit, what)
    if length > limit + framing:
        raise TooLarge(f"a {what} may be at most {limit} bytes")
    request.max_content_length = limit + framing
    return length


def parse_bounded(model: type[M], limit: int, *, allow_empty: bool = False) -> M:
    """``parse`` for a JSON body that may be large (a whole roster, the seat settings)."""
    return parse(model, allow_empty=allow_empty, limit=limit)


def captured_at_header() -> datetime | None:
    raw = request.headers.get("X-Captured-At")
    if raw is None:
        return None
    text = raw.strip()
    try:
        if not (text.isascii() and text.isdigit()) or len(text) > 15:  # int() takes "1_000" and "٣"
            raise ValueError("must be epoch milliseconds")
        return from_epoch_ms(int(text))
    except ValueError as err:
        raise BadRequest(f"X-Captured-At {err}", code="invalid_header") from None


def drain(stream) -> None:
    """Read what is left of a refused body (bounded: its length was checked before).

    Answering while the client is still sending makes the server close a half-read connection;
    the client then sees a reset instead of our answer and cannot tell why it failed.
    """
    while stream.read(CHUNK):
        pass
