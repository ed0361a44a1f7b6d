"""Staff accounts of the console: created by an administrator (the first one with
``proctor.cli create-admin``), checked at sign-in.

Only a hash of each password is kept: werkzeug's scrypt (``scrypt:32768:8:1``, salted, memory-hard),
already a dependency of Flask, so no other library stands between a password and its hash. A
sign-in with an unknown username checks the password against a dummy hash all the same, so the
answer takes as long as for a known one and does not tell which usernames exist.

An administrator (role ``admin``) manages the accounts: creates them, sets a new password on one,
removes one (never their own: so the last administrator always remains). A browser session keeps
``session_key`` of the password it signed in with: a new password signs out every other session of
that account.
"""
from __future__ import annotations

import re

import hashlib

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import utcnow
from ..db import engine
from ..errors import BadRequest, Conflict, NotFound
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


def session_key(row) -> str:
    """What a browser session keeps of the account's password: it changes with the password."""
    return hashlib.sha256(row.password_hash.encode()).hexdigest()[:32]


def list_staff() -> list:
    with engine().connect() as conn:
        return conn.execute(select(staff).order_by(staff.c.username)).all()


def _existing(conn, staff_id: int):
    row = conn.execute(select(staff).where(staff.c.id == staff_id)).first()
    if row is None:
        raise NotFound(f"there is no account {staff_id}")
    return row


def set_password(staff_id: int, password: str):
    """A new password on the account (its other sessions open nothing after it); its new row."""
    check_new_password(password)
    new_hash = generate_password_hash(password, method=HASH_METHOD)
    with engine().begin() as conn:
        _existing(conn, staff_id)
        conn.execute(update(staff).where(staff.c.id == staff_id).values(password_hash=new_hash))
        return _existing(conn, staff_id)


def change_own_password(staff_id: int, current: str, new: str):
    """The account's new password, given its current one; its new row."""
    with engine().connect() as conn:
        row = _existing(conn, staff_id)
    if len(current) > MAX_PASSWORD or not check_password_hash(row.password_hash, current):
        raise BadRequest("the current password is not right", code="wrong_password")
    return set_password(staff_id, new)


def remove_staff(staff_id: int, by_staff_id: int) -> None:
    """Remove an account (its sessions open nothing after it). Nobody removes their own: the one
    removing is an administrator, so at least one remains."""
    if staff_id == by_staff_id:
        raise Conflict("you cannot remove your own account", code="own_account")
    with engine().begin() as conn:
        # Locked, and the one removing must still be an administrator: two removing each other
        # at once cannot both succeed.
        admins = conn.execute(select(staff.c.id).where(staff.c.role == ADMIN).with_for_update()).scalars().all()
        if by_staff_id not in admins:
            raise Conflict("only an administrator removes accounts", code="not_admin")
        _existing(conn, staff_id)
        conn.execute(delete(staff).where(staff.c.id == staff_id))
