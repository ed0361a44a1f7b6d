"""Operator calls: ``GET /stats`` (teacher token)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from .. import stats
from .auth import require_teacher

bp = Blueprint("ops", __name__)


@bp.get("/stats")
def get_stats():
    require_teacher()
    return jsonify(stats.snapshot())
