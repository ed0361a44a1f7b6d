"""Domain errors, raised by the service modules and rendered by each front door.

The token API renders them as ``{"error": {"code", "message"}}``; the legacy seat protocol as
``{"status": "error", "message"}``. Both keep the HTTP status.
"""
from __future__ import annotations


class ProctorError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        # Seconds after which the same call may succeed: sent as Retry-After by both front doors.
        self.retry_after = retry_after
        if code:
            self.code = code
        if status:
            self.status = status


class BadRequest(ProctorError):
    status, code = 400, "bad_request"


class Unauthorized(ProctorError):
    status, code = 401, "unauthorized"


class Forbidden(ProctorError):
    status, code = 403, "forbidden"


class NotFound(ProctorError):
    status, code = 404, "not_found"


class Conflict(ProctorError):
    status, code = 409, "conflict"


class Gone(ProctorError):
    status, code = 410, "gone"


class LengthRequired(ProctorError):
    status, code = 411, "length_required"


class TooLarge(ProctorError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ProctorError):
    status, code = 415, "unsupported_media_type"


class InsufficientStorage(ProctorError):
    status, code = 507, "insufficient_storage"


class Unavailable(ProctorError):
    """A dependency cannot be reached (stopped, restarting, frozen, out of connections): the same
    call may succeed later, so every front door answers 503 with Retry-After."""

    status = 503
    RETRY_AFTER_S = 5

    def __init__(self, message: str):
        super().__init__(message, retry_after=self.RETRY_AFTER_S)


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"

    def __init__(self, message: str = "the database is unavailable; retry later"):
        super().__init__(message)


class RedisUnavailable(Unavailable):
    code = "redis_unavailable"

    def __init__(self, message: str = "the live state (Redis) is unavailable; retry later"):
        super().__init__(message)


def describe(err) -> str:
    """A pydantic ``ValidationError`` as one line naming each field (at most five), for a 400."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts[:5])
