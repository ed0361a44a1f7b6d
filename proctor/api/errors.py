"""JSON error rendering for the token API: ``{"error": {"code", "message"}}`` with a 4xx status."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ..errors import DatabaseUnavailable, ProctorError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def with_retry_after(response, err: ProctorError):
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, err.retry_after))
    return response


def database_busy(_err: PoolTimeout) -> DatabaseUnavailable:
    """No pooled connection came free in time (a frozen database holds them all): an outage too,
    answered as one by each front door (503, Retry-After)."""
    return DatabaseUnavailable("no database connection came free in time; retry later")


def register(app: Flask) -> None:
    @app.errorhandler(ProctorError)
    def _domain(err: ProctorError):
        return with_retry_after(error_response(err.status, err.code, err.message), err)

    app.register_error_handler(PoolTimeout, lambda err: _domain(database_busy(err)))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        code = (err.name or "error").lower().replace(" ", "_")
        return error_response(err.code or 500, code, err.description or err.name)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
