"""The desktop seats' front door: their protocol, field for field (see ``proctor.legacy``).

Answers are ``{"status": "success", ...}``; every failure is ``{"status": "error", "message"}``
with the domain error's 4xx status (the seat shows the message to the student). The handlers are
registered on this blueprint only, so the token API keeps its own error shape. The blueprint is
rate-limited per client address and not registered at all when ``PROCTOR_LEGACY_API=0``.

The client address is ``request.remote_addr``; behind a reverse proxy set
``PROCTOR_TRUSTED_PROXIES`` to the number of proxies so that it is the seat's and not the proxy's.
"""
from __future__ import annotations

import logging
from typing import Annotated

from flask import Blueprint, Flask, jsonify, request
from flask_limiter.util import get_remote_address
from pydantic import Field, StringConstraints, ValidationError
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .. import clock, filetypes, legacy, metrics, seat_settings, storage
from ..config import settings
from ..errors import BadRequest, ProctorError, TooLarge, UnsupportedMediaType
from . import drivers
from .errors import OUTAGES, outage, with_retry_after
from .limits import admission_per_address, limit_every_call, limiter
from .uploads import body_length
from .validation import Body, StudentId, describe

log = logging.getLogger(__name__)

bp = Blueprint("legacy", __name__, url_prefix="/api")

# Room for the form fields and multipart framing around the file part.
FORM_SLACK = 64 * 1024


def _seat_key() -> str:
    """Rate-limit key of one seat: its address and the student it names. A whole hall behind one
    NAT address shares the address, not the seat."""
    student = (request.view_args or {}).get("student_id") or _named_student()
    return f"{get_remote_address()}|{student or '-'}"


def _named_student() -> str | None:
    """The student id a small JSON or form body names (never read from an upload's body)."""
    if request.mimetype == "multipart/form-data":
        return None
    request.max_content_length = FORM_SLACK
    try:
        data = request.get_json(silent=True) if request.is_json else request.form
    except HTTPException:  # too large: the view refuses it
        return None
    value = data.get("student_id") if hasattr(data, "get") else None
    return str(value)[:64] if value is not None else None


# Every call: a ceiling per address, high enough for a hall behind one NAT address.
limit_every_call(bp, lambda: settings().legacy_rate_limit)
# Logins and student look-ups (what an enumeration uses): per seat, and in the one admission budget
# of the address.
_login_per_seat = limiter.shared_limit(lambda: settings().legacy_login_rate_limit, scope="legacy-login-seat",
                                       key_func=_seat_key)


def login_limit(view):
    return _login_per_seat(admission_per_address(view))
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}


# --- errors in the seat's shape ------------------------------------------------------------------


def seat_error(status: int, message: str):
    response = jsonify({"status": "error", "message": message})
    response.status_code = status
    return response


@bp.errorhandler(ProctorError)
def _domain(err: ProctorError):
    return with_retry_after(seat_error(err.status, err.message), err)


def _outage(err: Exception):
    return _domain(outage(err))


for _fault in OUTAGES:
    bp.register_error_handler(_fault, _outage)


@bp.errorhandler(HTTPException)
def _http(err: HTTPException):
    return seat_error(err.code or 500, err.description or err.name)


@bp.errorhandler(Exception)
def _unexpected(err: Exception):
    log.exception("unhandled error in the legacy protocol")
    return seat_error(500, "internal server error")


# --- request bodies ------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ExamId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class Login(Body):
    student_id: StudentId
    student_name: Name | None = None


class SelectExam(Login):
    exam_id: ExamId


class SeatCall(Body):
    student_id: StudentId
    exam_id: ExamId


class RecordingFields(SeatCall):
    sequence: Annotated[int, Field(ge=0, le=1_000_000)]
    timestamp: Annotated[str, StringConstraints(max_length=64)] | None = None


class ImageFields(SeatCall):
    timestamp: Annotated[str, StringConstraints(max_length=64)] | None = None


class ViolationFields(ImageFields):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


def _fields(model, *, with_file: bool = False):
    """JSON as the protocol says, or form fields (multipart calls, and lenient seats).

    Only a multipart body of a call that takes a file (``with_file``: its size was bounded by
    ``body_length``) may be larger than FORM_SLACK; any other body is a few fields, refused beyond
    that before it is read, and may carry no file (nothing is spooled to disk for a heartbeat).
    """
    multipart = request.mimetype == "multipart/form-data"
    if not (with_file and multipart):
        if (request.content_length or 0) > FORM_SLACK:
            raise TooLarge(f"the body of this call may be at most {FORM_SLACK} bytes")
        request.max_content_length = FORM_SLACK  # also ends a chunked body there
    try:
        data = request.get_json(silent=True) if request.is_json else None
        if data is None:
            data = request.form.to_dict()
    except RequestEntityTooLarge:
        raise TooLarge(f"the body of this call may be at most {FORM_SLACK} bytes") from None
    except RecursionError:  # "silent" does not catch it
        raise BadRequest("the JSON body is nested too deeply") from None
    if multipart and not with_file and request.files:
        raise BadRequest("this call takes no file")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(describe(err)) from None


def _file_size(part: FileStorage) -> int:
    # Werkzeug spooled the part to a temporary file (or memory when small): measure, do not read.
    part.stream.seek(0, 2)
    size = part.stream.tell()
    part.stream.seek(0)
    return size


def _peek(part: FileStorage, n: int = filetypes.HEAD_BYTES) -> bytes:
    head = part.stream.read(n)
    part.stream.seek(0)
    return head


def _client() -> str:
    return request.remote_addr or "unknown"


def _seat(fields: SeatCall) -> legacy.Seat:
    return legacy.seat_for(fields.student_id, fields.exam_id, _client())


# --- calls without a seat -----------------------------------------------------------------------


@bp.get("/server_time")
def server_time():
    return jsonify({"server_time": clock.server_time()})


@bp.get("/config")
def config():
    return jsonify({"status": "success", "config": seat_settings.seat_configuration()})


@bp.get("/students/<student_id>")
@login_limit
def student(student_id: str):
    found = legacy.seat_student(student_id)
    return jsonify({"status": "success", "student_id": found["student_id"], "student_name": found["name"]})


@bp.post("/login")
@login_limit
def login():
    body = _fields(Login)
    return jsonify(legacy.login(body.student_id, body.student_name, _client()))


@bp.post("/login/select_exam")
@login_limit
def select_exam():
    body = _fields(SelectExam)
    return jsonify(legacy.login(body.student_id, body.student_name, _client(), exam_id=body.exam_id))


# --- calls of a logged-in seat ------------------------------------------------------------------


@bp.post("/heartbeat")
def heartbeat():
    fields = _fields(SeatCall)
    # From Redis alone when the seat's binding is cached; the long way (the database) otherwise.
    answer = legacy.cached_heartbeat(fields.student_id, fields.exam_id, _client()) or legacy.heartbeat(_seat(fields))
    metrics.HEARTBEATS.inc()
    return jsonify(answer)


@bp.post("/logout")
def logout():
    return jsonify(legacy.logout(_seat(_fields(SeatCall)), _client()))


@bp.post("/screen_recording")
def screen_recording():
    body_length(settings().max_segment_bytes, "segment", framing=FORM_SLACK)
    fields = _fields(RecordingFields, with_file=True)
    seat = _seat(fields)
    part = request.files.get("video")
    if part is None:
        raise BadRequest("the file field 'video' is missing")
    media_type = _video_type(part)
    size = storage.check_size(_file_size(part), settings().max_segment_bytes, "segment")
    created, answer = legacy.store_recording(
        seat, fields.sequence, media_type, clock.parse_time(fields.timestamp), part.stream, size
    )
    if created:  # a re-sent segment is not new bytes
        metrics.UPLOAD_BYTES.inc(size)
    return jsonify(answer)


def _video_type(part: FileStorage) -> str:
    """From the file name the protocol prescribes, confirmed by the file's first bytes."""
    name = (part.filename or "").lower()
    media_type = next((t for ext, t in VIDEO_TYPES.items() if name.endswith(ext)), None)
    if media_type is None:
        raise UnsupportedMediaType("the video's file name must end in .mp4 or .webm")
    if filetypes.sniff(_peek(part)) != media_type:
        raise UnsupportedMediaType(f"the file is not an {name.rsplit('.', 1)[-1]} video")
    return media_type


def _image(name: str | None, *, required: bool) -> tuple | None:
    part = request.files.get(name) if name else next(iter(request.files.values()), None)
    if part is None or (not part.filename and _file_size(part) == 0):
        if required:
            raise BadRequest(f"the file field '{name or 'frame'}' is missing")
        return None
    return part.stream, _file_size(part)


@bp.post("/screenshot")
def screenshot():
    return _store_image("periodic", "screenshot")


@bp.post("/screen_frame")
def screen_frame():
    # The protocol does not name the frame's file field: take whichever file part came.
    return _store_image("frame", None)


def _store_image(kind: str, field: str | None):
    body_length(settings().max_screenshot_bytes, "screenshot", framing=FORM_SLACK)
    fields = _fields(ImageFields, with_file=True)
    seat = _seat(fields)
    stream, size = _image(field, required=True)
    legacy.store_screenshot(seat, kind, stream, size, clock.parse_time(fields.timestamp))
    return jsonify({"status": "success"})


@bp.post("/violation")
def violation():
    body_length(settings().max_screenshot_bytes, "screenshot", framing=FORM_SLACK)
    fields = _fields(ViolationFields, with_file=True)
    seat = _seat(fields)
    image = _image("screenshot", required=False)
    recorded = legacy.report_violation(seat, fields.reason, clock.parse_time(fields.timestamp), image)
    return jsonify({"status": "success", "violation_id": recorded["id"]})


# --- wiring ---------------------------------------------------------------------------------------


def register(app: Flask) -> None:
    """Mount the protocol (unless turned off)."""
    cfg = settings()
    if not cfg.legacy_api:
        log.info("legacy seat protocol is off (PROCTOR_LEGACY_API=0)")
        return
    app.register_blueprint(bp)
    app.register_blueprint(drivers.bp)
