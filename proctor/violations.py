"""Violations a seat reports (a forbidden app, a lost focus...), each with an optional screenshot.

Both front doors call ``record``; the teacher lists them per exam or per student with their
screenshots (the API adds each screenshot's address).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from . import screenshots as shots
from .clock import utcnow
from .db import engine
from .schema import screenshots, sessions, violations
from .errors import BadRequest, NotFound
from .exams import get_exam_row

MAX_REASON = 500


def record(session_id: int, reason: str, *, via: str, occurred_at: datetime | None = None,
           screenshot_id: int | None = None) -> dict:
    reason = " ".join((reason or "").split())
    if not reason:
        raise BadRequest("a violation needs a reason", code="invalid_body")
    if screenshot_id is not None and shots.session_of(screenshot_id) != session_id:
        raise BadRequest(f"screenshot {screenshot_id} belongs to another session", code="invalid_body")
    with engine().connect() as conn:
        if conn.execute(select(sessions.c.id).where(sessions.c.id == session_id)).first() is None:
            raise NotFound(f"session {session_id} does not exist")
    with engine().begin() as conn:
        vid = conn.execute(
            insert(violations).values(
                session_id=session_id,
                reason=reason[:MAX_REASON],
                occurred_at=occurred_at,
                received_at=utcnow(),
                screenshot_id=screenshot_id,
                via=via,
            )
        ).inserted_primary_key[0]
    return list_violations(violation_id=vid)[0]


def list_violations(*, exam_id: int | None = None, student_id: str | None = None,
                    session_id: int | None = None, violation_id: int | None = None) -> list[dict]:
    query = (
        select(violations, sessions.c.exam_id, sessions.c.student_id, screenshots.c.path.label("shot_path"),
               screenshots.c.media_type.label("shot_type"))
        .join(sessions, sessions.c.id == violations.c.session_id)
        .outerjoin(screenshots, screenshots.c.id == violations.c.screenshot_id)
    )
    if exam_id is not None:
        with engine().connect() as conn:
            get_exam_row(conn, exam_id)
        query = query.where(sessions.c.exam_id == exam_id)
    if student_id is not None:
        query = query.where(sessions.c.student_id == student_id)
    if session_id is not None:
        query = query.where(violations.c.session_id == session_id)
    if violation_id is not None:
        query = query.where(violations.c.id == violation_id)
    with engine().connect() as conn:
        rows = conn.execute(query.order_by(violations.c.id)).all()
    return [_dict(r) for r in rows]


def _dict(r) -> dict:
    shot = None
    if r.screenshot_id is not None:
        shot = {"id": r.screenshot_id, "media_type": r.shot_type, "archived": r.shot_path is None}
    return {
        "id": r.id,
        "exam_id": r.exam_id,
        "session_id": r.session_id,
        "student_id": r.student_id,
        "reason": r.reason,
        "occurred_at": r.occurred_at.isoformat() if r.occurred_at else None,
        "received_at": r.received_at.isoformat(),
        "via": r.via,
        "screenshot": shot,
    }
