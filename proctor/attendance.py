"""Who sits an exam, for the teacher: every student on the roster, whether or not they logged in,
and every student with a session who is not on it (token joins on an exam without a roster).

One query per table whatever the number of students (the roster, the sessions, and the counts of
segments, screenshots and violations grouped by session), plus one Redis call for the freshest
heartbeats, so a hall of 500 costs the same few round trips as a hall of 5.
"""
from __future__ import annotations

from sqlalchemy import func, select

from . import presence
from .db import engine
from .errors import NotFound
from .exams import get_exam_row
from .schema import roster, screenshots, segments, sessions, students, violations

NOT_LOGGED_IN = "not_logged_in"
COUNTED = {"segments": segments, "screenshots": screenshots, "violations": violations}


def exam_attendance(exam_id: int) -> list[dict]:
    """One row per student, by student id: ``student_id, name, on_roster``, the session's
    ``session_id, state`` (``not_logged_in`` without one), ``presence, client_addr, last_seen``,
    and its counts of ``segments, screenshots, violations``."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        on_roster = dict(conn.execute(select(roster.c.student_id, roster.c.name).where(roster.c.exam_id == exam_id)).all())
        by_student = {r.student_id: r for r in conn.execute(select(sessions).where(sessions.c.exam_id == exam_id))}
        counts = {what: _per_session(conn, table, exam_id) for what, table in COUNTED.items()}
        registered = _registry_names(conn, exam_id)
    seen = presence.last_seen([s.id for s in by_student.values()])
    return [
        {
            "student_id": student_id,
            "name": on_roster.get(student_id) or registered.get(student_id),
            "on_roster": student_id in on_roster,
            **_attendance(by_student.get(student_id), counts, seen),
        }
        for student_id in sorted(set(on_roster) | set(by_student))
    ]


def student_attendance(exam_id: int, student_id: str) -> dict:
    """The row of ``exam_attendance`` for one student of the exam (on its roster, or with a session
    of it); NotFound for anyone else."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        listed = conn.execute(select(roster.c.name).where(roster.c.exam_id == exam_id,
                                                          roster.c.student_id == student_id)).first()
        session = conn.execute(select(sessions).where(sessions.c.exam_id == exam_id,
                                                      sessions.c.student_id == student_id)).first()
        if listed is None and session is None:
            raise NotFound(f"student {student_id} is neither on the roster of exam {exam_id} nor in it")
        counts = {what: _per_session(conn, table, exam_id, session.id) if session else {}
                  for what, table in COUNTED.items()}
        registered = conn.execute(select(students.c.name).where(students.c.student_id == student_id)).scalar()
    seen = presence.last_seen([session.id] if session else [])
    return {
        "student_id": student_id,
        "name": (listed.name if listed else None) or registered,
        "on_roster": listed is not None,
        **_attendance(session, counts, seen),
    }


def _attendance(session, counts: dict[str, dict[int, int]], seen: dict) -> dict:
    if session is None:
        return {"session_id": None, "state": NOT_LOGGED_IN, "presence": "offline", "client_addr": None,
                "last_seen": None, **{what: 0 for what in counts}}
    # Redis has the freshest heartbeat while the session is tracked; the database after that, and
    # a session that never heartbeated was last seen logging in.
    last = seen.get(session.id) or session.last_heartbeat_at or session.joined_at
    return {
        "session_id": session.id,
        "state": session.state,
        "presence": session.presence,
        "client_addr": session.client_addr,
        "last_seen": last.isoformat(),
        **{what: per_session.get(session.id, 0) for what, per_session in counts.items()},
    }


def _per_session(conn, table, exam_id: int, session_id: int | None = None) -> dict[int, int]:
    """Counts of ``table``'s rows per session of the exam (of one session, when given)."""
    query = (select(table.c.session_id, func.count())
             .join(sessions, sessions.c.id == table.c.session_id)
             .where(sessions.c.exam_id == exam_id))
    if session_id is not None:
        query = query.where(table.c.session_id == session_id)
    return dict(conn.execute(query.group_by(table.c.session_id)).all())


def _registry_names(conn, exam_id: int) -> dict[str, str]:
    """Registry names of the exam's students, for those the roster names no name for."""
    of_exam = select(roster.c.student_id).where(roster.c.exam_id == exam_id).union(
        select(sessions.c.student_id).where(sessions.c.exam_id == exam_id)
    )
    return dict(conn.execute(
        select(students.c.student_id, students.c.name)
        .where(students.c.student_id.in_(of_exam), students.c.name.is_not(None))
    ).all())
