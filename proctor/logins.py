"""The login history: every login, rejoin, logout and refused seat call, with its address.

A second simultaneous login of one student (another address while the first was still online) is
flagged so the teacher sees it.
"""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import insert, select

from . import redis_client
from .clock import utcnow
from .config import settings
from .db import engine
from .schema import login_events

REFUSAL_NOTE_TTL_S = 60


def record_login(exam_id: int, session_id: int, student_id: str, *, resumed: bool, via: str,
                 client_addr: str | None, previous_addr: str | None, last_seen) -> dict:
    """Write a login or rejoin; flag it when another seat of the student was still live."""
    flagged, detail = _second_login(client_addr, previous_addr, last_seen) if resumed else (False, None)
    row = {
        "exam_id": exam_id,
        "session_id": session_id,
        "student_id": student_id,
        "kind": "rejoin" if resumed else "login",
        "via": via,
        "client_addr": client_addr,
        "flagged": flagged,
        "detail": detail,
        "at": utcnow(),
    }
    with engine().begin() as conn:
        conn.execute(insert(login_events).values(**row))
    return row


def _second_login(addr, previous_addr, last_seen) -> tuple[bool, str | None]:
    # A rejoin from the same address is a restarted client; from another address while the first
    # was still heartbeating, it is two machines using one student's identity.
    if previous_addr is None or addr == previous_addr or last_seen is None:
        return False, None
    if utcnow() - last_seen > timedelta(seconds=settings().offline_after_s):
        return False, None
    return True, f"second login while {previous_addr} was online"[:255]


def record_event(exam_id: int, session_id: int | None, student_id: str, kind: str, via: str,
                 client_addr: str | None, *, flagged: bool = False, detail: str | None = None) -> None:
    with engine().begin() as conn:
        write_event(conn, exam_id, session_id, student_id, kind, via, client_addr, flagged=flagged, detail=detail)


def write_event(conn, exam_id: int, session_id: int | None, student_id: str, kind: str, via: str,
                client_addr: str | None, *, flagged: bool = False, detail: str | None = None) -> None:
    """``record_event`` within the caller's transaction."""
    conn.execute(
        insert(login_events).values(
            exam_id=exam_id, session_id=session_id, student_id=student_id, kind=kind, via=via,
            client_addr=client_addr, flagged=flagged, detail=(detail or None) and detail[:255], at=utcnow(),
        )
    )


def record_refusal(exam_id: int, session_id: int, student_id: str, via: str, client_addr: str | None,
                   detail: str) -> None:
    """A refused login or call: shown to the teacher once a minute at most per session, door and
    address, so that a flood cannot fill the history table."""
    mark = redis_client.key("refused", via, session_id, client_addr or "-")
    if not redis_client.client().set(mark, int(time.time()), nx=True, ex=REFUSAL_NOTE_TTL_S):
        return
    record_event(exam_id, session_id, student_id, "refused", via, client_addr, flagged=True, detail=detail)


def login_history(exam_id: int, student_id: str | None = None, flagged_only: bool = False) -> list[dict]:
    query = select(login_events).where(login_events.c.exam_id == exam_id)
    if student_id:
        query = query.where(login_events.c.student_id == student_id)
    if flagged_only:
        query = query.where(login_events.c.flagged.is_(True))
    with engine().connect() as conn:
        rows = conn.execute(query.order_by(login_events.c.at, login_events.c.id)).all()
    return [
        {
            "id": r.id,
            "student_id": r.student_id,
            "session_id": r.session_id,
            "kind": r.kind,
            "via": r.via,
            "client_addr": r.client_addr,
            "flagged": bool(r.flagged),
            "detail": r.detail,
            "at": r.at.isoformat(),
        }
        for r in rows
    ]
