"""The installed desktop seats' protocol, served on top of the same sessions as the token API.

``proctor.api.legacy`` is the HTTP front door (field names, multipart, the error shape); this
module maps each call onto ``sessions.join/store_segment/finish``, ``presence.heartbeat``,
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
  file (compared without case and extra spaces) when one is on file. Every call is rate-limited
  per client address (``PROCTOR_LEGACY_RATE_LIMIT``, stricter ``PROCTOR_LEGACY_LOGIN_RATE_LIMIT``
  for logins and student look-ups). Uploads are bounded in size before they are read, recordings
  must be .mp4/.webm whose first bytes say so, images must be PNG or JPEG by their magic bytes,
  and re-sent segments are idempotent (different bytes for a stored sequence are refused).
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

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from . import presence, screenshots, sessions, storage, students, violations
from .db import engine, exams, legacy_seats, roster, seat_config, utcnow
from .db import sessions as sessions_t
from .errors import BadRequest, Conflict, Forbidden, NotFound

# --- times -------------------------------------------------------------------------------------

EPOCH = re.compile(r"^\d{9,13}(\.\d+)?$")
COMPACT_FORMATS = ("%Y%m%d_%H%M%S", "%Y%m%d%H%M%S", "%Y-%m-%d_%H-%M-%S", "%Y/%m/%d %H:%M:%S")


def server_time() -> str:
    """``YYYY-MM-DD HH:MM:SS`` in the server's local time, as the seats expect."""
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def local_iso(moment: datetime) -> str:
    """ISO 8601 in server local time with its offset: a seat reading it naively is still right."""
    return moment.astimezone().isoformat(timespec="seconds")


def parse_time(raw: str | None) -> datetime | None:
    """A seat's timestamp, read liberally: ISO 8601 with or without an offset (none = server local
    time), a space instead of ``T``, ``Z``, epoch seconds or milliseconds, or a compact form."""
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    if EPOCH.match(text):
        value = float(text)
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, timezone.utc)
    moment = _parse_text_time(text)
    if moment is None:
        raise BadRequest(f"timestamp {text[:40]!r} is not a date and time", code="invalid_timestamp")
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: the server's local time
    return moment.astimezone(timezone.utc)


def _parse_text_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        pass
    for fmt in COMPACT_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


# --- login -------------------------------------------------------------------------------------


def _running_exams(student_id: str) -> list:
    """Exams running now whose roster lists the student (a seat knows no exam id at login)."""
    now = utcnow()
    with engine().connect() as conn:
        return conn.execute(
            select(exams, roster.c.name.label("roster_name"))
            .join(roster, roster.c.exam_id == exams.c.id)
            .where(
                roster.c.student_id == student_id,
                exams.c.status != "completed",
                exams.c.starts_at <= now,
                exams.c.ends_at > now,
            )
            .order_by(exams.c.starts_at, exams.c.id)
        ).all()


def login(student_id: str, student_name: str | None, client_addr: str, exam_id: int | None = None) -> dict:
    """``/api/login`` and ``/api/login/select_exam``: the exam's answer, or the choice to make."""
    running = _running_exams(student_id)
    if not running:
        raise NotFound(f"student {student_id} is not registered for any exam running now")
    if exam_id is not None:
        running = [e for e in running if e.id == exam_id]
        if not running:
            raise NotFound(f"student {student_id} is not registered for a running exam {exam_id}")
    if len(running) > 1:
        return {
            "status": "choice_required",
            "exams": [
                {"id": e.id, "name": e.title, "start_time": local_iso(e.starts_at), "end_time": local_iso(e.ends_at)}
                for e in running
            ],
            "message": "You are registered for several exams running now: choose one.",
        }
    exam = running[0]
    _check_name(student_id, exam.roster_name, student_name)
    joined = sessions.join(exam.id, student_id, client_addr, via="legacy")
    bind_seat(joined["session_id"], client_addr)
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


def _login_answer(exam, student_id: str) -> dict:
    seat = exam_seat_settings(exam)
    return {
        "status": "success",
        "exam_id": exam.id,
        "student_id": student_id,
        "exam_name": exam.title,
        "start_time": local_iso(exam.starts_at),
        "end_time": local_iso(exam.ends_at),
        "default_url": seat["default_url"],
        "delay_min": seat["delay_min"],
        "disable_new_tabs": seat["disable_new_tabs"],
    }


def bind_seat(session_id: int, client_addr: str) -> None:
    """Tie the session to this seat's address; the counting decision (seq_offset) is kept."""
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


# --- the seat behind each later call -----------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    session_id: int
    exam_id: int
    student_id: str
    state: str
    client_addr: str
    seq_offset: int | None
    ends_at: datetime
    extended: bool  # the exam's end time differs from the one first scheduled


def seat_for(student_id: str, exam_id: int, client_addr: str) -> Seat:
    """The logged-in session this call is for; refused (and shown) from any other address."""
    with engine().connect() as conn:
        row = conn.execute(
            select(
                sessions_t.c.id, sessions_t.c.state, legacy_seats.c.client_addr, legacy_seats.c.seq_offset,
                exams.c.ends_at, exams.c.scheduled_ends_at,
            )
            .join(exams, exams.c.id == sessions_t.c.exam_id)
            .outerjoin(legacy_seats, legacy_seats.c.session_id == sessions_t.c.id)
            .where(sessions_t.c.exam_id == exam_id, sessions_t.c.student_id == student_id)
        ).first()
    if row is None:
        raise Forbidden(f"student {student_id} is not logged in to exam {exam_id}")
    if row.client_addr is None:
        raise Forbidden(f"student {student_id} did not log in to exam {exam_id} from a seat")
    if row.client_addr != client_addr:
        students.record_refusal(exam_id, row.id, student_id, client_addr,
                                f"call from {client_addr}; the seat logged in from {row.client_addr}")
        raise Forbidden(f"student {student_id} is logged in from another seat")
    return Seat(row.id, exam_id, student_id, row.state, row.client_addr, row.seq_offset,
                row.ends_at, row.ends_at != row.scheduled_ends_at)


def heartbeat(seat: Seat) -> dict:
    if seat.state != "active":
        raise Conflict("your exam session has ended", code="session_finished")
    presence.heartbeat(seat.session_id)
    answer = {"status": "success"}
    if seat.extended:  # extended (or shortened) since it started: the seat must learn of it
        answer["end_time"] = local_iso(seat.ends_at)
    return answer


def logout(seat: Seat, client_addr: str) -> dict:
    if seat.state != "active":
        return {"status": "success", "message": "already logged out"}
    sessions.finish(seat.session_id, None, via="legacy", client_addr=client_addr)
    return {"status": "success", "message": "logged out; the recording is being merged"}


# --- uploads -----------------------------------------------------------------------------------


def _seq_offset(seat: Seat, sequence: int) -> int:
    """How this seat counts, decided once at its first upload and kept with the binding.

    A seat whose first segment is 1 (and no 0 is stored) counts from 1: its segments are shifted
    down so the merged recording starts without a gap. Anything else counts from 0.
    """
    if seat.seq_offset is not None:
        return seat.seq_offset
    offset = 1 if sequence == 1 and sessions.seq_summary(seat.session_id)[2] == 0 else 0
    with engine().begin() as conn:
        conn.execute(
            update(legacy_seats)
            .where(legacy_seats.c.session_id == seat.session_id, legacy_seats.c.seq_offset.is_(None))
            .values(seq_offset=offset)
        )
        # Another upload may have decided first: its decision stands.
        return conn.execute(
            select(legacy_seats.c.seq_offset).where(legacy_seats.c.session_id == seat.session_id)
        ).scalar_one()


def store_recording(seat: Seat, sequence: int, media_type: str, captured_at: datetime | None,
                    body: BinaryIO, length: int) -> tuple[bool, dict]:
    """Store a seat's segment; returns (created, the seat's answer), as ``sessions.store_segment``."""
    seq = sequence - _seq_offset(seat, sequence)
    if seq < 0 or seq > sessions.MAX_SEQ:
        raise BadRequest(f"sequence {sequence} is out of range for this seat", code="invalid_seq")
    upload = sessions.Upload(seq=seq, media_type=media_type, length=length, captured_at=captured_at)
    created, info = sessions.store_segment(seat.session_id, upload, body)
    name = Path(storage.segment_path(seat.session_id, seq, media_type)).name
    return created, {"status": "success", "filename": name, "file_size": info["size"]}


def store_screenshot(seat: Seat, kind: str, body: BinaryIO, length: int, captured_at: datetime | None) -> dict:
    return screenshots.store(seat.session_id, kind, body, length, captured_at)


def report_violation(seat: Seat, reason: str, captured_at: datetime | None,
                     image: tuple[BinaryIO, int] | None) -> dict:
    shot_id = None
    if image is not None:
        shot_id = screenshots.store(seat.session_id, "violation", image[0], image[1], captured_at)["id"]
    return violations.record(seat.session_id, reason, via="legacy", occurred_at=captured_at, screenshot_id=shot_id)


# --- seat settings (GET /api/config) ----------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AllowedApp(_Model):
    exe: str = Field(min_length=1, max_length=260)
    name: str = Field(min_length=1, max_length=200)


class ChromeSettings(_Model):
    disable_extensions: bool = True
    disable_dev_tools: bool = True
    disable_downloads: bool = True
    disable_printing: bool = True
    disable_new_tabs: bool = False


class RecordingSettings(_Model):
    enabled: bool = True
    fps: int = Field(2, ge=1, le=60)
    quality: int = Field(80, ge=1, le=100)
    bitrate: int = Field(200_000, ge=10_000, le=50_000_000)
    interval: int = Field(60, ge=5, le=3600)
    codec: Literal["mp4", "webm"] = "mp4"
    scale_ratio: float = Field(0.5, gt=0, le=1)


class UploadSettings(_Model):
    interval: int = Field(60, ge=1, le=3600)
    max_delay: int = Field(300, ge=0, le=86_400)
    batch_size: int = Field(1, ge=1, le=100)
    retry_count: int = Field(3, ge=0, le=100)
    timeout: int = Field(120, ge=1, le=3600)


class ScreenRecording(_Model):
    recording: RecordingSettings = RecordingSettings()
    upload: UploadSettings = UploadSettings()


class SeatConfig(_Model):
    """What a seat is told by ``/api/config``. Only these keys exist: nothing else can leak."""

    allowed_apps: list[AllowedApp] = Field(default_factory=list, max_length=1000)
    allowed_executables: list[str] = Field(default_factory=list, max_length=1000)
    allowed_urls: list[str] = Field(default_factory=list, max_length=1000)
    allowed_url_patterns: list[str] = Field(default_factory=list, max_length=1000)
    default_url: str = Field("about:blank", max_length=2000)
    exam_time_limit: int = Field(120, ge=0, le=24 * 60)
    chrome_settings: ChromeSettings = ChromeSettings()
    enable_server_reporting: bool = True
    screenshot_on_violation: bool = True
    enable_screen_recording: bool = True
    enable_screenshot_upload: bool = True
    screen_recording: ScreenRecording = ScreenRecording()

    @field_validator("allowed_url_patterns")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
        return patterns


def seat_configuration() -> dict:
    """The teacher's seat settings, or the defaults until they are first saved."""
    with engine().connect() as conn:
        stored = conn.execute(select(seat_config.c.config).where(seat_config.c.id == 1)).scalar()
    # Re-validated on the way out so a setting added later gets its default.
    return SeatConfig.model_validate(stored or {}).model_dump()


def save_seat_configuration(new: SeatConfig) -> dict:
    config = new.model_dump()
    with engine().begin() as conn:
        if not conn.execute(update(seat_config).where(seat_config.c.id == 1).values(config=config, updated_at=utcnow())).rowcount:
            conn.execute(insert(seat_config).values(id=1, config=config, updated_at=utcnow()))
    return config


def exam_seat_settings(exam) -> dict:
    """The per-exam settings the login answer carries, falling back to the seat settings."""
    config = seat_configuration()
    own = exam.settings or {}
    return {
        "default_url": own.get("default_url") or config["default_url"],
        "delay_min": own.get("delay_min", 0),
        "disable_new_tabs": own.get("disable_new_tabs", config["chrome_settings"]["disable_new_tabs"]),
    }
