"""An exam's course: started at ``starts_at``, completed at ``ends_at``, by the teacher's end, or
by an edit that moves its end into the past.

Completing an exam closes every session still active: a client stops recording at the end and
only then sends its last (cut) segment, so a closing session keeps taking uploads until its client
finishes (logs out) or the upload grace ``PROCTOR_END_GRACE_S`` has passed; then it is finished and
merged.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, select

from . import exams, seat_cache, states
from .clock import utcnow
from .config import settings
from .db import engine
from .schema import exams as exams_t
from .schema import sessions
from .segments import next_seq as next_seq_of
from .sessions import mark_finished


def advance_exams() -> dict:
    """pending → active at starts_at; → completed at ends_at, closing what is still active;
    closing sessions whose grace is over are finished."""
    now = utcnow()
    with engine().begin() as conn:
        started = states.start_due_exams(conn, now)
        states.complete_due_exams(conn, now)
        # Includes exams ended by the teacher and any whose completion was interrupted earlier.
        to_complete = conn.execute(
            select(sessions.c.exam_id)
            .join(exams_t, and_(exams_t.c.id == sessions.c.exam_id, exams_t.c.status == states.COMPLETED))
            .where(sessions.c.state == states.ACTIVE)
            .distinct()
        ).scalars().all()
    closed = sum(complete_exam(exam_id) for exam_id in to_complete)
    return {"exams_started": started, "exams_completed": len(to_complete), "sessions_closed": closed,
            "sessions_finished": finish_due_closings()}


def complete_exam(exam_id: int) -> int:
    """Close every session still active in a completed exam; returns how many."""
    closes_at = utcnow() + timedelta(seconds=settings().end_grace_s)
    with engine().connect() as conn:
        active = conn.execute(
            select(sessions.c.id).where(sessions.c.exam_id == exam_id, sessions.c.state == states.ACTIVE)
        ).scalars().all()
    closed = 0
    for sid in active:
        with engine().begin() as conn:
            closed += states.close(conn, sid, closes_at)
    if settings().end_grace_s == 0:
        finish_due_closings()
    return closed


def finish_due_closings() -> int:
    """Finish the closing sessions whose upload grace is over and queue their merges."""
    with engine().connect() as conn:
        due = conn.execute(
            select(sessions.c.id).where(sessions.c.state == states.CLOSING, sessions.c.closes_at <= utcnow())
        ).scalars().all()
    finished = 0
    for sid in due:
        next_seq = next_seq_of(sid)
        finished += mark_finished(sid, next_seq - 1 if next_seq else None)
    return finished


def end_exam(exam_id: int) -> dict:
    """End an exam now: completed, its sessions closing (their clients learn the new end time
    from their next heartbeat, send their last segments and finish)."""
    with engine().begin() as conn:
        exams.get_exam_row(conn, exam_id)
        states.complete_exam_now(conn, exam_id, utcnow())
    seat_cache.forget_exam_end(exam_id)
    complete_exam(exam_id)
    with engine().connect() as conn:
        return exams.exam_dict(exams.get_exam_row(conn, exam_id))


def update_exam(exam_id: int, changes: dict) -> dict:
    """Change title, times or seat settings.

    Before the exam starts a new end time is simply the schedule; once it has started, the
    schedule (``scheduled_ends_at``) is kept so the legacy heartbeat tells the seats of the change.
    """
    now = utcnow()
    with engine().begin() as conn:
        row = exams.get_exam_row(conn, exam_id)
        values = exams.changed_values(row, changes, now)
        if values:
            conn.execute(exams_t.update().where(exams_t.c.id == exam_id).values(**values))
    if "ends_at" in values:
        seat_cache.forget_exam_end(exam_id)
    if values.get("status") == states.COMPLETED:
        complete_exam(exam_id)  # moved into the past: close its sessions now, as end_exam does
    return exams.exam_admin_dict(exam_id)
