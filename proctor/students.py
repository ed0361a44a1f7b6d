"""Students: the registry of ids and names.

The registry is what the legacy seat's login form is prefilled from and what an import fills; a
roster (``exams``) says who sits which exam.
"""
from __future__ import annotations

import re

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from .clock import utcnow
from .db import engine
from .errors import NotFound
from .schema import roster, students

STUDENT_ID = re.compile(r"^[\w.@+-]{1,64}$")
MAX_NAME = 200


def names_match(expected: str | None, given: str | None) -> bool:
    """Names compared without case and extra blanks; no name on file matches anything."""
    if not expected:
        return True
    norm = lambda s: " ".join((s or "").split()).casefold()  # noqa: E731
    return norm(expected) == norm(given)


# --- registry ----------------------------------------------------------------------------------


def student_dict(row) -> dict:
    return {"student_id": row.student_id, "name": row.name}


def get_student(student_id: str) -> dict:
    """The registry entry, else the name a roster gives; NotFound when neither knows the id."""
    with engine().connect() as conn:
        row = conn.execute(select(students).where(students.c.student_id == student_id)).first()
        if row is not None:
            return student_dict(row)
        name = conn.execute(
            select(roster.c.name).where(roster.c.student_id == student_id).order_by(roster.c.id.desc())
        ).first()
    if name is None:
        raise NotFound(f"student {student_id} is unknown")
    return {"student_id": student_id, "name": name[0]}


def list_students() -> list[dict]:
    with engine().connect() as conn:
        return [student_dict(r) for r in conn.execute(select(students).order_by(students.c.student_id))]


def search_students(text: str, limit: int, offset: int = 0) -> tuple[list[dict], int]:
    """Students whose id or name contains ``text`` (any case; empty: everyone), by id: one page of
    ``limit`` from ``offset``, and how many match in all."""
    matching = select(students)
    if text:
        # LIKE's own wildcards in the text are searched for as themselves ("/": MariaDB reads a
        # backslash in a literal as an escape of its own).
        pattern = "%" + re.sub(r"([/%_])", r"/\1", text.lower()) + "%"
        matching = matching.where(or_(func.lower(students.c.student_id).like(pattern, escape="/"),
                                      func.lower(students.c.name).like(pattern, escape="/")))
    with engine().connect() as conn:
        total = conn.execute(select(func.count()).select_from(matching.subquery())).scalar_one()
        rows = conn.execute(matching.order_by(students.c.student_id).limit(limit).offset(offset))
        return [student_dict(r) for r in rows], total


def upsert_students(entries: list[dict], conn: Connection | None = None) -> tuple[int, int]:
    """Add or rename students in one transaction (``conn``'s, when given); returns (created, updated)."""
    if conn is None:
        with engine().begin() as own:
            return upsert_students(entries, own)
    created = updated = 0
    now = utcnow()
    known = {
        r.student_id: r.name
        for r in conn.execute(
            select(students.c.student_id, students.c.name).where(
                students.c.student_id.in_([e["student_id"] for e in entries])
            )
        )
    } if entries else {}
    for e in entries:
        if e["student_id"] not in known:
            conn.execute(insert(students).values(**e, created_at=now, updated_at=now))
            created += 1
        elif e.get("name") and known[e["student_id"]] != e["name"]:
            conn.execute(
                update(students)
                .where(students.c.student_id == e["student_id"])
                .values(name=e["name"], updated_at=now)
            )
            updated += 1
    return created, updated


def delete_student(student_id: str) -> None:
    with engine().begin() as conn:
        if not conn.execute(delete(students).where(students.c.student_id == student_id)).rowcount:
            raise NotFound(f"student {student_id} is not in the registry")
