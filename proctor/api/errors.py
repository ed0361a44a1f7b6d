"""JSON error rendering for the token API: ``{"error": {"code", "message"}}`` with a 4xx status."""
from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from ..errors import DatabaseUnavailable, ProctorError, RedisUnavailable, Unavailable

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def with_retry_after(response, err: ProctorError):
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, err.retry_after))
    return response


# Faults of a dependency that surface as its own exceptions: each front door answers them as the
# outage they are (503, Retry-After) in its own shape, through ``outage``.
OUTAGES = (PoolTimeout, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def outage(err: Exception) -> Unavailable:
    if isinstance(err, PoolTimeout):
        # No pooled connection came free in time: a frozen database holds them all.
        return DatabaseUnavailable("no database connection came free in time; retry later")
    log.warning("Redis unavailable: %s", err)
    return RedisUnavailable()


def register(app: Flask) -> None:
    @app.errorhandler(ProctorError)
    def _domain(err: ProctorError):
        return with_retry_after(error_response(err.status, err.code, err.message), err)

    for fault in OUTAGES:
        app.register_error_handler(fault, lambda err: _domain(outage(err)))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        code = (err.name or "error").lower().replace(" ", "_")
        return error_response(err.code or 500, code, err.description or err.name)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
