"""Teacher calls on exams, and the student's join."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from .. import exams, sessions
from .auth import require_teacher
from .validation import ExamCreate, Join, check_schedule, parse

bp = Blueprint("exams", __name__, url_prefix="/api/exams")


@bp.post("")
def create_exam():
    require_teacher()
    body = parse(ExamCreate)
    check_schedule(body.starts_at, body.ends_at)
    return jsonify(exams.create_exam(body.title, body.starts_at, body.ends_at, body.students())), 201


@bp.get("")
def list_exams():
    require_teacher()
    return jsonify({"exams": exams.list_exams()})


@bp.get("/<int:exam_id>")
def get_exam(exam_id: int):
    require_teacher()
    return jsonify(exams.exam_detail(exam_id))


@bp.get("/<int:exam_id>/sessions")
def exam_sessions(exam_id: int):
    require_teacher()
    return jsonify({"sessions": sessions.exam_roster(exam_id)})


@bp.post("/<int:exam_id>/end")
def end_exam(exam_id: int):
    require_teacher()
    return jsonify(exams.end_exam(exam_id))


@bp.post("/<int:exam_id>/join")
def join(exam_id: int):
    body = parse(Join)
    return jsonify(sessions.join(exam_id, body.student_id, request.remote_addr)), 201
