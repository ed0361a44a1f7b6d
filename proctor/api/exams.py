"""Teacher calls on exams (create, read, update, delete, roster, entry code, invitations), and the
student's join."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from .. import admission, attendance, exams, lifecycle, sessions
from ..config import is_true, settings
from .auth import is_teacher, require_teacher
from .headers import no_store
from .limits import admission_per_address, admission_per_exam
from .uploads import parse_bounded
from .validation import (EntryCode, ExamCopy, ExamCreate, ExamUpdate, Invite, Join, StudentList, check_schedule,
                         parse)

bp = Blueprint("exams", __name__, url_prefix="/api/exams")


@bp.post("")
def create_exam():
    require_teacher()
    body = parse_bounded(ExamCreate, settings().max_import_bytes)
    check_schedule(body.starts_at, body.ends_at)
    exam = exams.create_exam(body.title, body.starts_at, body.ends_at, body.students())
    exam["warnings"] = exams.overlap_warnings(exam["id"])
    exam["generated"] = body.generated()
    return jsonify(exam), 201


@bp.post("/<id:exam_id>/copy")
def copy_exam(exam_id: int):
    """A new exam with this one's roster and seat settings, at the times given."""
    require_teacher()
    body = parse(ExamCopy)
    check_schedule(body.starts_at, body.ends_at)
    exam = exams.copy_exam(exam_id, body.title, body.starts_at, body.ends_at)
    exam["warnings"] = exams.overlap_warnings(exam["id"])
    return jsonify(exam), 201


@bp.get("")
def list_exams():
    require_teacher()
    return jsonify({"exams": exams.list_exams()})


@bp.get("/<id:exam_id>")
def get_exam(exam_id: int):
    require_teacher()
    return jsonify(exams.exam_detail(exam_id))


@bp.get("/<id:exam_id>/sessions")
def exam_sessions(exam_id: int):
    require_teacher()
    return jsonify({"sessions": sessions.exam_sessions(exam_id)})


@bp.post("/<id:exam_id>/end")
def end_exam(exam_id: int):
    require_teacher()
    return jsonify(lifecycle.end_exam(exam_id))


@bp.post("/<id:exam_id>/join")
@admission_per_address
@admission_per_exam
def join(exam_id: int):
    """A student joins with their proof; the teacher's token lets any student in."""
    body = parse(Join)
    proof = admission.Proof(body.student_id, body.entry_code, body.invitation_code)
    joined = admission.join(exam_id, proof, request.remote_addr, by_teacher=is_teacher())
    return no_store(jsonify(joined)), 201


@bp.post("/<id:exam_id>/entry-code")
def entry_code(exam_id: int):
    """A new entry code (the old one stops working), or ``{"enabled": false}``: invitations only."""
    require_teacher()
    body = parse(EntryCode, allow_empty=True)
    return no_store(jsonify(admission.set_entry_code(exam_id, body.enabled)))


@bp.post("/<id:exam_id>/invitations")
def invite(exam_id: int):
    """One-use invitation codes, shown only in this answer (print them)."""
    require_teacher()
    body = parse_bounded(Invite, settings().max_import_bytes, allow_empty=True)
    return no_store(jsonify({"invitations": admission.issue_invitations(exam_id, body.students)})), 201


@bp.get("/<id:exam_id>/invitations")
def invitations(exam_id: int):
    require_teacher()
    return jsonify({"invitations": admission.list_invitations(exam_id)})


@bp.patch("/<id:exam_id>")
def update_exam(exam_id: int):
    require_teacher()
    return jsonify(lifecycle.update_exam(exam_id, parse(ExamUpdate).changes()))


@bp.delete("/<id:exam_id>")
def delete_exam(exam_id: int):
    require_teacher()
    force = is_true(request.args.get("force"))
    return jsonify(exams.delete_exam(exam_id, force=force))


@bp.get("/<id:exam_id>/roster")
def get_roster(exam_id: int):
    """Every student of the exam: the roster, whether or not they logged in, and any session of a
    student not on it."""
    require_teacher()
    return jsonify({"roster": attendance.exam_attendance(exam_id), "warnings": exams.overlap_warnings(exam_id)})


@bp.post("/<id:exam_id>/roster")
def add_roster(exam_id: int):
    require_teacher()
    body = parse_bounded(StudentList, settings().max_import_bytes)
    return jsonify({**exams.add_to_roster(exam_id, body.entries()), "generated": body.generated()})


@bp.delete("/<id:exam_id>/roster/<student_id>")
def remove_roster(exam_id: int, student_id: str):
    require_teacher()
    exams.remove_from_roster(exam_id, student_id)
    return "", 204
