"""Exams: creation with an optional roster, listing, counts, and ending early."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update

from .db import engine, exams, roster, sessions, utcnow
from .errors import NotFound

EXAM_STATES = ("pending", "active", "completed")


def exam_dict(row) -> dict:
    return {
        "id": row.id,
        "title": row.title,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "status": row.status,
    }


def status_for(starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    if now >= ends_at:
        return "completed"
    return "active" if now >= starts_at else "pending"


def create_exam(title: str, starts_at: datetime, ends_at: datetime, students: list[dict] | None) -> dict:
    with engine().begin() as conn:
        exam_id = conn.execute(
            insert(exams).values(
                title=title,
                starts_at=starts_at,
                ends_at=ends_at,
                scheduled_ends_at=ends_at,
                # Created already running or over: the status check would say the same within 30 s.
                status=status_for(starts_at, ends_at, utcnow()),
                roster_restricted=students is not None,
                created_at=utcnow(),
            )
        ).inserted_primary_key[0]
        if students:
            conn.execute(insert(roster), [{"exam_id": exam_id, **s} for s in students])
        return exam_dict(conn.execute(select(exams).where(exams.c.id == exam_id)).one())


def get_exam_row(conn, exam_id: int):
    row = conn.execute(select(exams).where(exams.c.id == exam_id)).first()
    if row is None:
        raise NotFound(f"exam {exam_id} does not exist")
    return row


def list_exams() -> list[dict]:
    with engine().connect() as conn:
        return [exam_dict(r) for r in conn.execute(select(exams).order_by(exams.c.id))]


def exam_detail(exam_id: int) -> dict:
    with engine().connect() as conn:
        exam = exam_dict(get_exam_row(conn, exam_id))
        by_state = dict(
            conn.execute(
                select(sessions.c.state, func.count())
                .where(sessions.c.exam_id == exam_id)
                .group_by(sessions.c.state)
            ).all()
        )
        by_presence = dict(
            conn.execute(
                select(sessions.c.presence, func.count())
                .where(sessions.c.exam_id == exam_id, sessions.c.state == "active")
                .group_by(sessions.c.presence)
            ).all()
        )
        roster_size = conn.execute(
            select(func.count()).select_from(roster).where(roster.c.exam_id == exam_id)
        ).scalar_one()
    exam["roster_size"] = roster_size
    exam["sessions"] = {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "by_presence": {"online": by_presence.get("online", 0), "offline": by_presence.get("offline", 0)},
    }
    return exam


def end_exam(exam_id: int) -> dict:
    """End an exam now; the status check finishes its sessions and queues their merges."""
    from .status import complete_exam  # status depends on sessions, which depends on this module

    now = utcnow()
    with engine().begin() as conn:
        row = get_exam_row(conn, exam_id)
        if row.status != "completed":
            conn.execute(
                update(exams)
                .where(exams.c.id == exam_id)
                .values(status="completed", ends_at=min(row.ends_at, now))
            )
    complete_exam(exam_id)
    with engine().connect() as conn:
        return exam_dict(get_exam_row(conn, exam_id))
