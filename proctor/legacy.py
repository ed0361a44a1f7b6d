"""The installed desktop seats' protocol, served on top of the same sessions as the token API.

``proctor.api.legacy`` is the HTTP front door (field names, multipart, the error shape); this
module maps each call onto ``sessions.join/finish``, ``segments.store_segment``, ``presence.heartbeat``,
``screenshots.store`` and ``violations.record`` — there is no second implementation of any of them.

LEGACY_GUARANTEES
-----------------
The desktop seat sends no token: a call names a ``student_id`` and an ``exam_id`` and nothing
else. This server therefore binds each student's session to the seat that logged in:

- What it does: the login records the client address (``request.remote_addr``, or the address
  ``PROCTOR_TRUSTED_PROXIES`` lets a reverse proxy report) with the session. Every later call for
  that student and exam (heartbeat, recording, screenshot, frame, violation, logout) must come from
  that address, or it is refused with HTTP 403 and shown to the teacher as a flagged ``refused``
  entry of the login history (at most once a minute per address). A login of a student whose
  session is still online from another address is accepted (the student may have moved seats),
  rebinds the session to the new seat, and is flagged in the login history; from then on the old
  seat is refused. A student logs in only to an exam whose roster lists them, with the name on
  file (compared without case and extra spaces) when one is on file. Logins and student look-ups
  are rate-limited per seat (address and student, ``PROCTOR_LEGACY_LOGIN_RATE_LIMIT``) and per
  address (``PROCTOR_JOIN_ADDRESS_RATE_LIMIT``), every call under a per-address ceiling
  (``PROCTOR_LEGACY_RATE_LIMIT``) that a hall behind one NAT address stays far below. Uploads are
  bounded in size before they are read, recordings must be .mp4/.webm whose first bytes say so,
  images must be PNG or JPEG by their magic bytes, and re-sent segments are idempotent within a
  run (different bytes for a stored sequence of the same run are refused; a restarted seat's
  reused sequences go to its new run).
  ``/api/config`` serves only the seat settings the teacher edits, never server configuration.
  ``PROCTOR_LEGACY_API=0`` turns the whole protocol off.
- What it cannot prevent: anyone who knows a student's id and name and reaches the server can log
  in as that student before the real student does, or from the same address as the real seat
  (several seats behind one NAT address, or a proxy without ``PROCTOR_TRUSTED_PROXIES``, share an
  address and cannot be told apart). A second login is only flagged, not blocked: the teacher
  decides. Addresses can be spoofed on a network without ingress filtering, and plain HTTP can be
  read and altered on the way: put the server behind TLS where the seats allow it. ``GET
  /api/students/<id>`` tells a student's name to whoever asks (the seats need it to prefill the
  form); the rate limit only slows enumeration. Nothing here proves that a recording shows the
  student's own screen: the server checks the file's form, not its content.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import BinaryIO

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import (
    logins, presence, redis_client, screenshots, seat_cache, segments, sessions, states, storage, students, tokens,
    violations,
)
from .clock import seat_time, utcnow
from .config import settings
from .db import engine
from .errors import BadRequest, Conflict, Forbidden, NotFound
from .schema import exams, legacy_seats, roster, seat_runs
from .schema import sessions as sessions_t
from .seat_settings import exam_seat_settings

# --- login -------------------------------------------------------------------------------------


def _running_exams(student_id: str, opening_within_s: int = 0) -> list:
    """Exams running now whose roster lists the student (a seat knows no exam id at login)."""
    now = utcnow()
    with engine().connect() as conn:
        return conn.execute(
            select(exams, roster.c.name.label("roster_name"))
            .join(roster, roster.c.exam_id == exams.c.id)
            .where(
                roster.c.student_id == student_id,
                exams.c.status != states.COMPLETED,
                exams.c.starts_at <= now + timedelta(seconds=opening_within_s),
                exams.c.ends_at > now,
            )
            .order_by(exams.c.starts_at, exams.c.id)
        ).all()


def seat_student(student_id: str) -> dict:
    """``/api/students/<id>``, which prefills the seat's login form: only a student registered for
    an exam running now or opening for joining soon is known, so that the look-up is no directory of
    every student's name between exams."""
    running = _running_exams(student_id, opening_within_s=settings().join_early_s)
    if not running:
        raise NotFound(f"student {student_id} is not registered for any exam running now")
    name = running[0].roster_name
    if not name:
        try:
            name = students.get_student(student_id)["name"]
        except NotFound:
            name = None
    return {"student_id": student_id, "name": name}


def login(student_id: str, student_name: str | None, client_addr: str, exam_id: int | None = None) -> dict:
    """``/api/login`` and ``/api/login/select_exam``: the exam's answer, or the choice to make."""
    running = _running_exams(student_id)
    if not running:
        raise NotFound(f"student {student_id} is not registered for any exam running now")
    if exam_id is not None:
        running = [e for e in running if e.id == exam_id]
        if not running:
            raise NotFound(f"student {student_id} is not registered for a running exam {exam_id}")
    for exam in running:  # before anything about the exams is told: the name must match
        _check_name(student_id, exam.roster_name, student_name)
    if len(running) > 1:
        return {
            "status": "choice_required",
            "exams": [
                {"id": e.id, "name": e.title, "start_time": seat_time(e.starts_at), "end_time": seat_time(e.ends_at)}
                for e in running
            ],
            "message": "You are registered for several exams running now: choose one.",
        }
    exam = running[0]
    # A seat logs in again after a restart (counting from 1 again: a new run) or after logging out
    # by mistake (its session reopens while the exam runs).
    joined = sessions.join(exam.id, student_id, client_addr, via="legacy", reopen=True)
    _keep_first_name(exam, student_id, student_name)
    bind_seat(joined["session_id"], client_addr)
    seat_cache.bind(exam.id, student_id, joined["session_id"], client_addr, tokens.hash_token(joined["token"]))
    start_run(joined["session_id"], client_addr)
    return _login_answer(exam, student_id)


def _check_name(student_id: str, roster_name: str | None, given: str | None) -> None:
    expected = roster_name
    if not expected:
        try:
            expected = students.get_student(student_id)["name"]
        except NotFound:
            expected = None
    if not students.names_match(expected, given):
        raise Forbidden(f"the name does not match student {student_id}'s name on file")


def _keep_first_name(exam, student_id: str, given: str | None) -> None:
    """A student with no name on file keeps the name of their first login: later logins must give
    the same one, so a classmate cannot log in as them with any name."""
    if exam.roster_name or not given or not given.strip():
        return
    with engine().begin() as conn:
        conn.execute(
            update(roster)
            .where(roster.c.exam_id == exam.id, roster.c.student_id == student_id, roster.c.name.is_(None))
            .values(name=" ".join(given.split())[:200])
        )


def _login_answer(exam, student_id: str) -> dict:
    seat = exam_seat_settings(exam)
    return {
        "status": "success",
        "exam_id": exam.id,
        "student_id": student_id,
        "exam_name": exam.title,
        "start_time": seat_time(exam.starts_at),
        "end_time": seat_time(exam.ends_at),
        "default_url": seat["default_url"],
        "delay_min": seat["delay_min"],
        "disable_new_tabs": seat["disable_new_tabs"],
    }


def bind_seat(session_id: int, client_addr: str) -> None:
    """Tie the session to this seat's address."""
    with engine().begin() as conn:
        changed = conn.execute(
            update(legacy_seats)
            .where(legacy_seats.c.session_id == session_id)
            .values(client_addr=client_addr, bound_at=utcnow())
        ).rowcount
    if changed:
        return
    try:
        with engine().begin() as conn:
            conn.execute(insert(legacy_seats).values(session_id=session_id, client_addr=client_addr, bound_at=utcnow()))
    except IntegrityError:  # a concurrent login of the same student inserted it first
        bind_seat(session_id, client_addr)


def start_run(session_id: int, client_addr: str) -> int:
    """Record a login of the seat as a new run; returns its number.

    The first run is 0, unless the session already holds segments of run 0 (it was joined through
    the token API, or logged in before runs were recorded): then the seat starts at run 1.
    """
    try:
        with engine().begin() as conn:
            last = conn.execute(select(func.max(seat_runs.c.run)).where(seat_runs.c.session_id == session_id)).scalar()
            if last is None:
                last = 0 if segments.read_next_seq(conn, session_id, 0) else -1
            conn.execute(insert(seat_runs).values(session_id=session_id, run=last + 1, started_at=utcnow(),
                                                  client_addr=client_addr))
            return last + 1
    except IntegrityError:  # two logins of one seat at once: the other one numbered this run
        return start_run(session_id, client_addr)


# --- the seat behind each later call -----------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    session_id: int
    exam_id: int
    student_id: str
    state: str
    client_addr: str
    ends_at: datetime
    extended: bool  # the exam's end time differs from the one first scheduled
    token_hash: str
    scheduled_ends_at: datetime


def seat_for(student_id: str, exam_id: int, client_addr: str) -> Seat:
    """The logged-in session this call is for; refused (and shown) from any other address."""
    with engine().connect() as conn:
        row = conn.execute(
            select(
                sessions_t.c.id, sessions_t.c.state, sessions_t.c.door, sessions_t.c.token_hash,
                legacy_seats.c.client_addr, exams.c.ends_at, exams.c.scheduled_ends_at,
            )
            .join(exams, exams.c.id == sessions_t.c.exam_id)
            .outerjoin(legacy_seats, legacy_seats.c.session_id == sessions_t.c.id)
            .where(sessions_t.c.exam_id == exam_id, sessions_t.c.student_id == student_id)
        ).first()
    if row is None:
        raise Forbidden(f"student {student_id} is not logged in to exam {exam_id}")
    if row.client_addr is None or row.door == "token":  # never at a seat, or handed to a browser
        raise Forbidden(f"student {student_id} did not log in to exam {exam_id} from a seat")
    if row.client_addr != client_addr:
        logins.record_refusal(exam_id, row.id, student_id, "legacy", client_addr,
                              f"call from {client_addr}; the seat logged in from {row.client_addr}")
        raise Forbidden(f"student {student_id} is logged in from another seat")
    return Seat(row.id, exam_id, student_id, row.state, row.client_addr, row.ends_at,
                row.ends_at != row.scheduled_ends_at, row.token_hash, row.scheduled_ends_at)


# The seat heartbeat from Redis alone (``seat_cache``), in one round trip: the seat's binding must
# name this address and carry a token hash the token cache still maps to the session; then the
# presence heartbeat. Returns {-1} when anything needed is not cached (or does not match), else
# {the heartbeat's outcome, the session, the exam's cached end}.
_SEAT_HEARTBEAT = presence.BEAT_LUA + """
local seat, ends = redis.call('get', KEYS[3]), redis.call('get', KEYS[4])
if not seat or not ends then
  return {-1}
end
local sid, addr, token = string.match(seat, '^(%d+) (%S+) (%x+)$')
if addr ~= ARGV[1] or redis.call('get', ARGV[3] .. token) ~= sid then
  return {-1}
end
return {beat(KEYS[1], KEYS[2], sid, ARGV[2]), sid, ends}
"""


def cached_heartbeat(student_id: str, exam_id: int, client_addr: str) -> dict | None:
    """``heartbeat`` of a seat whose binding and exam end are cached, without the database; None
    when they are not, or when the session is not tracked (finished): ``heartbeat`` tells why."""
    hb, offline = presence.set_keys()
    script = redis_client.client().register_script(_SEAT_HEARTBEAT)
    found = script(keys=[hb, offline, seat_cache.seat_key(exam_id, student_id), seat_cache.exam_end_key(exam_id)],
                   args=[client_addr, time.time(), seat_cache.token_prefix()])
    if found[0] <= 0:
        return None
    outcome, session_id, ends = found
    if outcome == 2:
        presence.back_online(int(session_id))
    ends_at, scheduled_ends_at = (float(t) for t in ends.split())
    return _heartbeat_answer(datetime.fromtimestamp(ends_at, timezone.utc), ends_at != scheduled_ends_at)


def heartbeat(seat: Seat) -> dict:
    """Presence, and the end time whenever the seat must act on it: once the exam was extended or
    shortened, and once it is over (the seat's own timer then ends the exam: it uploads its last
    segment and logs out)."""
    over = utcnow() >= seat.ends_at
    if seat.state not in states.OPEN and not over:
        raise Conflict("your exam session has ended", code="session_finished")
    if seat.state in states.OPEN and presence.heartbeat(seat.session_id) and seat.token_hash:
        seat_cache.remember(seat.exam_id, seat.student_id, seat.session_id, seat.client_addr, seat.token_hash,
                            seat.ends_at, seat.scheduled_ends_at)
    return _heartbeat_answer(seat.ends_at, seat.extended)


def _heartbeat_answer(ends_at: datetime, extended: bool) -> dict:
    over = utcnow() >= ends_at
    answer = {"status": "success"}
    if extended or over:
        answer["end_time"] = seat_time(ends_at)
    if over:
        answer["message"] = "the exam is over"
    return answer


def logout(seat: Seat, client_addr: str) -> dict:
    if seat.state not in states.OPEN:
        return {"status": "success", "message": "already logged out"}
    sessions.finish(seat.session_id, None, via="legacy", client_addr=client_addr)
    return {"status": "success", "message": "logged out; the recording is being merged"}


# --- uploads -----------------------------------------------------------------------------------


def store_recording(seat: Seat, sequence: int, media_type: str, captured_at: datetime | None,
                    body: BinaryIO, length: int) -> tuple[bool, dict]:
    """Store a seat's segment in the run of its current login; returns (created, the answer).

    A segment whose bytes differ from those stored under its sequence in this run, captured before
    this login, is one an earlier run of the seat had queued: it goes to that run.
    """
    if sequence > segments.MAX_SEQ:
        raise BadRequest(f"sequence {sequence} is out of range", code="invalid_seq")
    runs = segments.seat_runs_of(seat.session_id)
    run = runs[-1].run if runs else 0
    try:
        return _store_in_run(seat, run, sequence, media_type, captured_at, body, length)
    except Conflict as err:
        earlier = _earlier_run(runs, captured_at) if err.code == "segment_conflict" else None
        if earlier is None:
            raise
        body.seek(0)
        return _store_in_run(seat, earlier, sequence, media_type, captured_at, body, length)


def _earlier_run(runs: list, captured_at: datetime | None) -> int | None:
    """The latest earlier run logged in before the segment was captured, if any."""
    if captured_at is None or len(runs) < 2:
        return None
    candidates = [r.run for r in runs[:-1] if r.started_at <= captured_at]
    return candidates[-1] if candidates else None


def _store_in_run(seat: Seat, run: int, sequence: int, media_type: str, captured_at: datetime | None,
                  body: BinaryIO, length: int) -> tuple[bool, dict]:
    upload = segments.Upload(seq=sequence, run=run, media_type=media_type, length=length, captured_at=captured_at)
    created, info = segments.store_segment(seat.session_id, upload, body)
    name = storage.segment_path(seat.session_id, run, sequence, media_type).name
    return created, {"status": "success", "filename": name, "file_size": info["size"]}


def store_screenshot(seat: Seat, kind: str, body: BinaryIO, length: int, captured_at: datetime | None) -> dict:
    return screenshots.store(seat.session_id, kind, body, length, captured_at)


def report_violation(seat: Seat, reason: str, captured_at: datetime | None,
                     image: tuple[BinaryIO, int] | None) -> dict:
    shot_id = None
    if image is not None:
        shot_id = screenshots.store(seat.session_id, "violation", image[0], image[1], captured_at)["id"]
    return violations.record(seat.session_id, reason, via="legacy", occurred_at=captured_at, screenshot_id=shot_id)


