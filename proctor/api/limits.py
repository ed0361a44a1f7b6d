"""Rate limits of both front doors, counted in Redis (Flask-Limiter), with 429 and Retry-After.

Limits are read per request from the settings, so tests and operators change them by env var.
Everything that could enumerate students or guess codes (token-API joins, the seats' logins and
name look-ups) shares one budget per address; token-API joins have a budget per exam as well,
whichever addresses they come from.
"""
from __future__ import annotations

import math
import time

from flask import Blueprint, Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ..config import settings

# No default or application-wide limits: a limit is a view's own (checked by its decorator) or on
# every call of a blueprint (``limit_every_call``, checked before the view).
limiter = Limiter(key_func=get_remote_address)  # storage and options come from install()
_limited_blueprints: set[str] = set()


def install(app: Flask) -> None:
    cfg = settings()
    app.config.setdefault("RATELIMIT_STORAGE_URI", cfg.redis_url)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", cfg.redis_prefix + "ratelimit")
    # Flask-Limiter's own headers would put its window's reset into the Retry-After of every
    # answer, over the one a refusal gives (a session in use, an outage): only a 429 gets one.
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    # A Redis hiccup must not turn every seat away: the limit then simply does not apply.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    limiter.init_app(app)
    # Flask-Limiter checks before every request, whatever its route, which was a tenth of a token
    # heartbeat's time; only calls of a blueprint limited as a whole have anything to check there.
    hooks = app.before_request_funcs[None]
    hooks[hooks.index(limiter._check_request_limit)] = _check_blueprint_limits
    app.after_request(_retry_after_on_429)


def limit_every_call(bp: Blueprint, limit) -> None:
    """Every call of ``bp`` counts against ``limit`` (a string or a callable giving one)."""
    limiter.limit(limit)(bp)
    _limited_blueprints.add(bp.name)


def _check_blueprint_limits() -> None:
    if request.blueprint in _limited_blueprints:
        limiter._check_request_limit()


def _retry_after_on_429(response):
    if response.status_code != 429:
        return response
    breached = [limit for limit in limiter.current_limits if limit.breached]
    if breached:
        wait = max(limit.reset_at for limit in breached) - time.time()
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _exam_key() -> str:
    return f"exam-{(request.view_args or {}).get('exam_id')}"


admission_per_address = limiter.shared_limit(lambda: settings().join_address_rate_limit, scope="admission-address")
admission_per_exam = limiter.shared_limit(lambda: settings().join_exam_rate_limit, scope="admission-exam",
                                          key_func=_exam_key)
