"""Administration on the token API: the student registry and its import, the seats'
settings, login history, violations, screenshots, and the exam report.

Teacher calls need the admin token; a student's own session token may post that session's
violations and screenshots.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file, url_for

from .. import archive, exams, imports, logins, report, screenshots, seat_settings, students, violations
from ..clock import from_epoch_ms
from ..config import is_true, settings
from ..errors import BadRequest, ProctorError, UnsupportedMediaType
from .auth import require_session, require_teacher
from .converters import MAX_ID
from .uploads import body_length, captured_at_header, drain, parse_bounded
from .validation import StudentList, ViolationIn, parse

bp = Blueprint("admin", __name__, url_prefix="/api")


def _linked(shot: dict | None) -> dict | None:
    """A screenshot's description with the address the teacher fetches it from."""
    if shot is not None:
        shot["url"] = url_for("admin.get_screenshot", shot_id=shot["id"])
    return shot


def _with_screenshot_link(violation: dict) -> dict:
    _linked(violation["screenshot"])
    return violation


# --- student registry --------------------------------------------------------------------------


@bp.get("/admin/students")
def list_students():
    require_teacher()
    return jsonify({"students": students.list_students()})


@bp.post("/admin/students")
def add_students():
    require_teacher()
    body = parse_bounded(StudentList, settings().max_import_bytes)
    created, updated = students.upsert_students(body.entries())
    return jsonify({"created": created, "updated": updated, "generated": body.generated()}), 200


@bp.delete("/admin/students/<student_id>")
def delete_student(student_id: str):
    require_teacher()
    students.delete_student(student_id)
    return "", 204


@bp.post("/admin/students/import")
def import_students():
    """A CSV, .xlsx or text roster file, as the raw body or as the multipart field ``file``.

    ``?exam_id=N`` also puts every accepted student on that exam's roster; an unknown exam
    changes nothing.
    """
    require_teacher()
    exam_id = _exam_id_arg()
    data, media_type, filename = _import_body()
    return jsonify(imports.import_table(data, media_type, filename, exam_id))


def _exam_id_arg() -> int | None:
    # Not ``type=int``: it turns "abc" into no exam at all, and "٣" into exam 3.
    raw = request.args.get("exam_id")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 1 <= int(raw) <= MAX_ID:
        raise BadRequest("exam_id must be an exam's id", code="invalid_exam_id")
    return int(raw)


def _import_body() -> tuple[bytes, str, str]:
    length = body_length(settings().max_import_bytes, "import file")
    if request.mimetype == "multipart/form-data":
        part = request.files.get("file")
        if part is None:
            raise BadRequest("the multipart field 'file' is missing", code="invalid_body")
        return part.read(length), (part.mimetype or "").lower(), part.filename or ""
    # An admin import is small and bounded above: reading it whole is fine (openpyxl needs it).
    return request.get_data(cache=False), (request.mimetype or "").lower(), ""


# --- seat settings -----------------------------------------------------------------------------


@bp.get("/admin/seat-config")
def get_seat_config():
    require_teacher()
    return jsonify(seat_settings.seat_configuration())


@bp.put("/admin/seat-config")
def put_seat_config():
    require_teacher()
    new = parse_bounded(seat_settings.SeatConfig, seat_settings.MAX_BYTES, allow_empty=True)
    return jsonify(seat_settings.save_seat_configuration(new))


# --- login history -----------------------------------------------------------------------------


@bp.get("/exams/<id:exam_id>/logins")
def login_history(exam_id: int):
    require_teacher()
    with_flag = is_true(request.args.get("flagged"))
    exams.exam_detail(exam_id)  # 404 for an unknown exam
    return jsonify({"logins": logins.login_history(exam_id, request.args.get("student_id"), with_flag)})


# --- violations --------------------------------------------------------------------------------


@bp.post("/sessions/<id:session_id>/violations")
def post_violation(session_id: int):
    require_session(session_id, teacher_ok=False)
    body = parse(ViolationIn)
    occurred = None if body.occurred_at is None else from_epoch_ms(body.occurred_at)
    recorded = violations.record(session_id, body.reason, via="token", occurred_at=occurred,
                                 screenshot_id=body.screenshot_id)
    return jsonify(_with_screenshot_link(recorded)), 201


@bp.get("/sessions/<id:session_id>/violations")
def session_violations(session_id: int):
    require_teacher()
    found = violations.list_violations(session_id=session_id)
    return jsonify({"violations": [_with_screenshot_link(v) for v in found]})


@bp.get("/exams/<id:exam_id>/violations")
def exam_violations(exam_id: int):
    require_teacher()
    found = violations.list_violations(exam_id=exam_id, student_id=request.args.get("student_id") or None)
    return jsonify({"violations": [_with_screenshot_link(v) for v in found]})


# --- screenshots -------------------------------------------------------------------------------


@bp.post("/sessions/<id:session_id>/screenshots")
def post_screenshot(session_id: int):
    """The raw image as the body (image/png or image/jpeg), like a segment upload.

    ``?kind=violation`` marks one meant for a violation report (default ``periodic``).
    """
    require_session(session_id, teacher_ok=False)
    kind = request.args.get("kind", "periodic")
    if kind not in screenshots.KINDS:
        raise BadRequest(f"kind must be one of {', '.join(screenshots.KINDS)}", code="invalid_kind")
    if (request.mimetype or "").lower() not in screenshots.EXTENSIONS:
        raise UnsupportedMediaType("Content-Type must be image/png or image/jpeg")
    length = body_length(settings().max_screenshot_bytes, "screenshot")
    try:
        shot = screenshots.store(session_id, kind, request.stream, length, captured_at_header())
    except ProctorError:
        drain(request.stream)
        raise
    return jsonify(_linked(shot)), 201


@bp.get("/sessions/<id:session_id>/screenshots")
def session_screenshots(session_id: int):
    require_teacher()
    shots = screenshots.list_for_session(session_id, request.args.get("kind") or None)
    return jsonify({"screenshots": [_linked(shot) for shot in shots]})


@bp.get("/screenshots/<id:shot_id>")
def get_screenshot(shot_id: int):
    require_teacher()
    path, shot = screenshots.file_of(shot_id)
    return send_file(path, mimetype=shot["media_type"], conditional=True, etag=shot["sha256"], max_age=0)


# --- exam report and archives -------------------------------------------------------------------


@bp.get("/exams/<id:exam_id>/archives")
def exam_archives(exam_id: int):
    """Where ``proctor.cli archive`` moved this exam's files."""
    require_teacher()
    return jsonify({"archives": archive.archives_of(exam_id)})



@bp.get("/exams/<id:exam_id>/report.csv")
def exam_report(exam_id: int):
    require_teacher()
    text = report.report_csv(exam_id)
    return Response(
        text, mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="exam-{exam_id}-report.csv"'},
    )
