"""``GET /health``: liveness plus a check of every dependency, 503 when one is down.

Anyone (a load balancer, a monitor) learns up or down; what is down and why (connection errors
can name hosts and ports) only the teacher token."""
from __future__ import annotations

import shutil

from flask import Blueprint, jsonify
from sqlalchemy import text

from .. import redis_client, storage
from ..config import settings
from ..db import engine
from .auth import is_teacher

bp = Blueprint("health", __name__)


def _database() -> None:
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis() -> None:
    redis_client.client().ping()


def _ffmpeg() -> None:
    for tool in (settings().ffmpeg, settings().ffprobe):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH")


CHECKS = {
    "database": _database,
    "redis": _redis,
    "storage": storage.check_writable,
    "ffmpeg": _ffmpeg,
}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = {"ok": True}
        except Exception as err:  # noqa: BLE001 - any failure means "down"; say why
            results[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
    return results


@bp.get("/health")
def health():
    checks = run_checks()
    down = [name for name, result in checks.items() if not result["ok"]]
    body = {"status": "ok" if not down else "down"}
    if is_teacher():
        body.update(down=down, checks=checks)
    return jsonify(body), 503 if down else 200
