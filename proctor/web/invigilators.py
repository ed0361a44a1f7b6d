"""Invigilators: read-only access to one exam, opened with a password the teacher sets on that
exam (as the original system's monitor password did).

Only a hash of the password is kept, on the exam's row (werkzeug's scrypt, as for staff accounts).
An invigilator's browser session holds the exam and a fingerprint of the hash it signed in with:
when the teacher changes or clears the password, the fingerprint no longer matches and every
invigilator signed in with the old one is signed out at their next request. What an invigilator
may do is decided in one place, ``console`` (``watches_exam``, ``signed_in``).
"""
from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from ..db import engine
from ..exams import get_exam_row
from ..schema import exams
from .accounts import DUMMY_HASH, HASH_METHOD, MAX_PASSWORD, check_new_password


def set_password(exam_id: int, password: str) -> None:
    """The exam's invigilator password (a new one signs out whoever used the old one)."""
    check_new_password(password)
    _store(exam_id, generate_password_hash(password, method=HASH_METHOD))


def clear_password(exam_id: int) -> None:
    """No invigilator may sign in to the exam any more; those signed in are signed out."""
    _store(exam_id, None)


def _store(exam_id: int, password_hash: str | None) -> None:
    with engine().begin() as conn:
        get_exam_row(conn, exam_id)
        conn.execute(update(exams).where(exams.c.id == exam_id).values(invigilator_password_hash=password_hash))


def _stored_hash(exam_id: int) -> str | None:
    with engine().connect() as conn:
        return conn.execute(select(exams.c.invigilator_password_hash).where(exams.c.id == exam_id)).scalar()


def has_password(exam_id: int) -> bool:
    return _stored_hash(exam_id) is not None


def fingerprint(password_hash: str) -> str:
    """Names one setting of the password (each hash has its own salt) without being the hash."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def authenticate(exam_id: int, password: str) -> str | None:
    """The fingerprint an invigilator's session keeps, if the password opens the exam; else None.
    An exam without a password, or none at all, costs the same check: the answer does not tell."""
    stored = _stored_hash(exam_id)
    candidate = password[:MAX_PASSWORD + 1]
    if stored is None or len(password) > MAX_PASSWORD:
        check_password_hash(DUMMY_HASH, candidate)
        return None
    return fingerprint(stored) if check_password_hash(stored, candidate) else None


def still_opens(exam_id: int, signed_in_with: str) -> bool:
    """Whether the password a session signed in with is still the exam's."""
    stored = _stored_hash(exam_id)
    return stored is not None and hmac.compare_digest(fingerprint(stored), signed_in_with)
