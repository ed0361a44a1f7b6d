"""Log format and request ids.

Each request gets an id (the client's ``X-Request-ID`` when it is sane, else a new one) that is
put on every log line written while serving it and returned in the response header. Messages
carry request data now and then (a file name, an exception's text), so they are written through
the escaping formatter Gunicorn's own logs use: a CR LF or NUL in them cannot start a line.
"""
from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, g, has_request_context, request

from .serving import EscapingFormatter

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if any(isinstance(f, _RequestId) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(_RequestId())
    handler.setFormatter(
        EscapingFormatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)


def install_request_ids(app: Flask) -> None:
    @app.before_request
    def _assign():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _echo(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response
