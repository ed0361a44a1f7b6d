"""Who may join an exam through the token API: the one owner of that policy.

A student id alone is never enough. A student proves who they are with

* the exam's **entry code**, which the teacher shows to the hall (rotatable, or turned off), plus
  their student id; or
* their own **invitation code** (printable, one use, only its hash kept), which names the student.

The teacher's token may create or take over any student's session (the console's "let this
student in"). Joins open ``PROCTOR_JOIN_EARLY_S`` before the exam starts. A student's join never
takes a session that another client is using: a session that is online (heartbeating) is refused
until it has been silent for ``PROCTOR_OFFLINE_AFTER_S``, and a session that belongs to a desktop
seat is refused until the teacher releases it (``sessions.release``). Both refusals are written to
the login history, flagged, for the teacher to see.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from . import sessions, states
from .codes import ENTRY_CODE_LENGTH, INVITATION_CODE_LENGTH, code_hash, grouped, new_code, normalise
from .clock import utcnow
from .config import settings
from .db import engine
from .errors import BadRequest, Conflict, Forbidden, ProctorError
from .exams import get_exam_row
from .schema import exams, invitations, roster

WRONG_CODE = "the code is not valid for this exam"


# --- the entry code ------------------------------------------------------------------------------


def set_entry_code(exam_id: int, enabled: bool = True) -> dict:
    """A new entry code for the exam (the old one stops working), or none: invitations only."""
    code = new_code(ENTRY_CODE_LENGTH) if enabled else None
    with engine().begin() as conn:
        get_exam_row(conn, exam_id)
        conn.execute(update(exams).where(exams.c.id == exam_id).values(entry_code=code))
    return {"exam_id": exam_id, "entry_code": code and grouped(code)}


# --- invitations ---------------------------------------------------------------------------------


def issue_invitations(exam_id: int, student_ids: list[str] | None) -> list[dict]:
    """A new invitation code for each student (default: the whole roster); any earlier code of
    theirs for this exam stops working. The codes are shown once, here, and never again."""
    now = utcnow()
    with engine().begin() as conn:
        exam = get_exam_row(conn, exam_id)
        names = dict(conn.execute(select(roster.c.student_id, roster.c.name).where(roster.c.exam_id == exam_id)).all())
        if student_ids is None:
            if not names:
                raise BadRequest(f"exam {exam_id} has no roster: name the students", code="invalid_body")
            student_ids = list(names)
        elif exam.roster_restricted:
            outside = [s for s in student_ids if s not in names]
            if outside:
                raise Conflict(f"not on the roster of exam {exam_id}: {', '.join(outside[:10])}", code="not_on_roster")
        codes = {s: new_code(INVITATION_CODE_LENGTH) for s in dict.fromkeys(student_ids)}
        conn.execute(delete(invitations).where(invitations.c.exam_id == exam_id, invitations.c.student_id.in_(codes)))
        conn.execute(insert(invitations), [
            {"exam_id": exam_id, "student_id": s, "code_hash": code_hash(c), "created_at": now} for s, c in codes.items()
        ])
    return [{"student_id": s, "name": names.get(s), "code": grouped(c)} for s, c in codes.items()]


def list_invitations(exam_id: int) -> list[dict]:
    """Who has an invitation and whether it was used (never the codes)."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        rows = conn.execute(
            select(invitations).where(invitations.c.exam_id == exam_id).order_by(invitations.c.student_id)
        ).all()
    return [
        {"student_id": r.student_id, "created_at": r.created_at.isoformat(),
         "used_at": r.used_at and r.used_at.isoformat()}
        for r in rows
    ]


# --- proving who joins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """What a join carries: a student id with the entry code, or an invitation code."""

    student_id: str | None = None
    entry_code: str | None = None
    invitation_code: str | None = None


def admitted_student(exam_id: int, proof: Proof, now: datetime | None = None) -> str:
    """The student a join proves, if the exam is open to joining; otherwise a 4xx.

    The code is checked before anything about the exam is told, so a caller without one learns
    nothing about its schedule or roster. An invitation is spent here, once.
    """
    now = now or utcnow()
    with engine().begin() as conn:
        exam = get_exam_row(conn, exam_id)
        student_id = _proven_student(conn, exam, proof, now)
        _check_open(exam, now)
    return student_id


def _proven_student(conn, exam, proof: Proof, now: datetime) -> str:
    if proof.invitation_code:
        return _spend_invitation(conn, exam.id, proof, now)
    if not proof.entry_code:
        raise Forbidden("joining needs the exam's entry code or an invitation code", code="code_required")
    if not proof.student_id:
        raise BadRequest("student_id is required with an entry code", code="invalid_body")
    if not exam.entry_code or not hmac.compare_digest(normalise(proof.entry_code), exam.entry_code):
        raise Forbidden(WRONG_CODE, code="invalid_code")
    return proof.student_id


def _spend_invitation(conn, exam_id: int, proof: Proof, now: datetime) -> str:
    row = conn.execute(
        select(invitations).where(invitations.c.code_hash == code_hash(proof.invitation_code),
                                  invitations.c.exam_id == exam_id)
    ).first()
    if row is None or (proof.student_id and proof.student_id != row.student_id):
        raise Forbidden(WRONG_CODE, code="invalid_code")
    spent = conn.execute(
        update(invitations).where(invitations.c.id == row.id, invitations.c.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if not spent:
        raise Conflict("this invitation code was already used: ask the teacher for a new one", code="invitation_used")
    return row.student_id


def opens_at(exam) -> datetime:
    return exam.starts_at - timedelta(seconds=settings().join_early_s)


def _check_open(exam, now: datetime) -> None:
    if exam.status == states.COMPLETED:
        raise Conflict(f"exam {exam.id} is completed", code="exam_completed")
    if now < opens_at(exam):
        raise Forbidden(f"exam {exam.id} opens for joining at {opens_at(exam).isoformat()}", code="exam_not_open")



# --- joining -------------------------------------------------------------------------------------


def join(exam_id: int, proof: Proof, client_addr: str | None, *, by_teacher: bool = False) -> dict:
    """The token API's join: the teacher lets any student in (taking the session over if need be);
    a student joins with their proof. An invitation refused by the session (in use, on a seat)
    stays unspent."""
    if by_teacher:
        if not proof.student_id:
            raise BadRequest("student_id is required", code="invalid_body")
        return sessions.join(exam_id, proof.student_id, client_addr, takeover=True)
    student_id = admitted_student(exam_id, proof)
    try:
        return sessions.join(exam_id, student_id, client_addr)
    except ProctorError:
        if proof.invitation_code:
            _unspend(exam_id, proof.invitation_code)
        raise


def _unspend(exam_id: int, code: str) -> None:
    with engine().begin() as conn:
        conn.execute(update(invitations).where(invitations.c.exam_id == exam_id,
                                               invitations.c.code_hash == code_hash(code)).values(used_at=None))
