"""Staff accounts of the console: created by an administrator (the first one with
``proctor.cli create-admin``), checked at sign-in.

Only a hash of each password is kept: werkzeug's scrypt (``scrypt:32768:8:1``, salted, memory-hard),
already a dependency of Flask, so no other library stands between a password and its hash. A
sign-in with an unknown username checks the password against a dummy hash all the same, so the
answer takes as long as for a known one and does not tell which usernames exist.
"""
from __future__ import annotations

import re

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import utcnow
from ..db import engine
from ..errors import BadRequest, Conflict
from ..schema import staff

ADMIN, TEACHER = "admin", "teacher"
ROLES = (ADMIN, TEACHER)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing is deliberately slow: a bound keeps one sign-in from costing more
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
HASH_METHOD = "scrypt"
DUMMY_HASH = generate_password_hash("not a password of anyone", method=HASH_METHOD)


def normal_username(raw: str) -> str:
    """Usernames compare without case or surrounding blanks."""
    return raw.strip().lower()


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"the password must have at least {MIN_PASSWORD} characters", code="weak_password")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"the password may have at most {MAX_PASSWORD} characters", code="invalid_body")


def create_staff(username: str, password: str, role: str = TEACHER) -> dict:
    name = normal_username(username)
    if not USERNAME.match(name):
        raise BadRequest("a username is 1 to 64 letters, digits or . _ @ -, starting with a letter or digit",
                         code="invalid_username")
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    check_new_password(password)
    try:
        with engine().begin() as conn:
            staff_id = conn.execute(
                insert(staff).values(username=name, role=role, created_at=utcnow(),
                                     password_hash=generate_password_hash(password, method=HASH_METHOD))
            ).inserted_primary_key[0]
    except IntegrityError:
        raise Conflict(f"there is already an account named {name}", code="username_taken") from None
    return {"id": staff_id, "username": name, "role": role}


def authenticate(username: str, password: str):
    """The account these credentials open (its row, the sign-in time recorded), else None."""
    name = normal_username(username)
    with engine().connect() as conn:
        row = conn.execute(select(staff).where(staff.c.username == name)).first() if len(name) <= 64 else None
    candidate = password[:MAX_PASSWORD + 1]
    if row is None or len(password) > MAX_PASSWORD:
        check_password_hash(DUMMY_HASH, candidate)
        return None
    if not check_password_hash(row.password_hash, candidate):
        return None
    with engine().begin() as conn:
        conn.execute(update(staff).where(staff.c.id == row.id).values(last_sign_in_at=utcnow()))
    return row


def staff_row(staff_id: int):
    """The account, or None when it no longer exists."""
    with engine().connect() as conn:
        return conn.execute(select(staff).where(staff.c.id == staff_id)).first()


def set_locale(staff_id: int, locale: str | None) -> None:
    with engine().begin() as conn:
        conn.execute(update(staff).where(staff.c.id == staff_id).values(locale=locale))
