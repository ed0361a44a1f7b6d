"""Administration on the token API (issue 5): the student registry and its import, the seats'
settings, login history, violations, screenshots, and the exam report.

Teacher calls need the admin token; a student's own session token may post that session's
violations and screenshots.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file

from .. import exams, legacy, screenshots, students, violations
from ..config import settings
from ..errors import BadRequest, ProctorError, UnsupportedMediaType
from .auth import require_session, require_teacher
from .uploads import body_length, captured_at_header, drain
from .validation import StudentList, ViolationIn, from_epoch_ms, parse

bp = Blueprint("admin", __name__, url_prefix="/api")


# --- student registry --------------------------------------------------------------------------


@bp.get("/admin/students")
def list_students():
    require_teacher()
    return jsonify({"students": students.list_students()})


@bp.post("/admin/students")
def add_students():
    require_teacher()
    created, updated = students.upsert_students(parse(StudentList).entries())
    return jsonify({"created": created, "updated": updated}), 200


@bp.delete("/admin/students/<student_id>")
def delete_student(student_id: str):
    require_teacher()
    students.delete_student(student_id)
    return "", 204


@bp.post("/admin/students/import")
def import_students():
    """A CSV or .xlsx file, as the raw body or as the multipart field ``file``.

    ``?exam_id=N`` also puts every accepted student on that exam's roster.
    """
    require_teacher()
    exam_id = request.args.get("exam_id", type=int)
    data, media_type, filename = _import_body()
    report = students.import_table(data, media_type, filename)
    if exam_id is not None:
        entries = [{"student_id": s["student_id"], "name": s["name"]} for s in report["students"]]
        report["roster"] = exams.add_to_roster(exam_id, entries) if entries else {"added": [], "warnings": []}
    return jsonify(report)


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
    return jsonify(legacy.seat_configuration())


@bp.put("/admin/seat-config")
def put_seat_config():
    require_teacher()
    return jsonify(legacy.save_seat_configuration(parse(legacy.SeatConfig, allow_empty=True)))


# --- login history -----------------------------------------------------------------------------


@bp.get("/exams/<int:exam_id>/logins")
def login_history(exam_id: int):
    require_teacher()
    with_flag = request.args.get("flagged", "").lower() in {"1", "true", "yes"}
    exams.exam_detail(exam_id)  # 404 for an unknown exam
    return jsonify({"logins": students.login_history(exam_id, request.args.get("student_id"), with_flag)})


# --- violations --------------------------------------------------------------------------------


@bp.post("/sessions/<int:session_id>/violations")
def post_violation(session_id: int):
    require_session(session_id, teacher_ok=False)
    body = parse(ViolationIn)
    occurred = None if body.occurred_at is None else from_epoch_ms(body.occurred_at)
    recorded = violations.record(session_id, body.reason, via="token", occurred_at=occurred,
                                 screenshot_id=body.screenshot_id)
    return jsonify(recorded), 201


@bp.get("/sessions/<int:session_id>/violations")
def session_violations(session_id: int):
    require_teacher()
    return jsonify({"violations": violations.list_violations(session_id=session_id)})


@bp.get("/exams/<int:exam_id>/violations")
def exam_violations(exam_id: int):
    require_teacher()
    found = violations.list_violations(exam_id=exam_id, student_id=request.args.get("student_id") or None)
    return jsonify({"violations": found})


# --- screenshots -------------------------------------------------------------------------------


@bp.post("/sessions/<int:session_id>/screenshots")
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
    return jsonify(shot), 201


@bp.get("/sessions/<int:session_id>/screenshots")
def session_screenshots(session_id: int):
    require_teacher()
    return jsonify({"screenshots": screenshots.list_for_session(session_id, request.args.get("kind") or None)})


@bp.get("/screenshots/<int:shot_id>")
def get_screenshot(shot_id: int):
    require_teacher()
    path, shot = screenshots.file_of(shot_id)
    return send_file(path, mimetype=shot["media_type"], conditional=True, etag=shot["sha256"], max_age=0)


# --- exam report and archives -------------------------------------------------------------------


@bp.get("/exams/<int:exam_id>/archives")
def exam_archives(exam_id: int):
    """Where ``proctor.cli archive`` moved this exam's files."""
    require_teacher()
    from .. import archive

    return jsonify({"archives": archive.archives_of(exam_id)})



@bp.get("/exams/<int:exam_id>/report.csv")
def exam_report(exam_id: int):
    require_teacher()
    from .. import archive

    text = archive.report_csv(exam_id)
    return Response(
        text, mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="exam-{exam_id}-report.csv"'},
    )
