"""Teacher calls on exams (create, read, update, delete, roster), and the student's join."""
from __future__ import annotations

from typing import Annotated

from flask import Blueprint, jsonify, request
from pydantic import AwareDatetime, Field, StringConstraints

from .. import exams, sessions
from ..errors import BadRequest
from .auth import require_teacher
from .validation import ExamCreate, Join, RosterEntry, StudentId, Strict, check_schedule, parse

bp = Blueprint("exams", __name__, url_prefix="/api/exams")


@bp.post("")
def create_exam():
    require_teacher()
    body = parse(ExamCreate)
    check_schedule(body.starts_at, body.ends_at)
    exam = exams.create_exam(body.title, body.starts_at, body.ends_at, body.students())
    exam["warnings"] = exams.overlap_warnings(exam["id"])
    return jsonify(exam), 201


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


# --- administration (issue 5) ---------------------------------------------------------------------


class ExamSettings(Strict):
    """Seat settings of one exam, given to legacy seats at login."""

    default_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    delay_min: Annotated[int, Field(ge=0, le=24 * 60, strict=True)] | None = None
    disable_new_tabs: bool | None = None


class ExamUpdate(Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    settings: ExamSettings | None = None

    def changes(self) -> dict:
        """Only what the body named; a field given as null is refused rather than cleared."""
        out = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                raise BadRequest(f"{name} may not be null", code="invalid_body")
            out[name] = value.model_dump(exclude_unset=True) if name == "settings" else value
        return out


class RosterAdd(Strict):
    students: list[StudentId | RosterEntry] = Field(min_length=1, max_length=100_000)

    def entries(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for item in self.students:
            entry = RosterEntry(student_id=item) if isinstance(item, str) else item
            seen[entry.student_id] = {"student_id": entry.student_id, "name": entry.name}
        return list(seen.values())


@bp.patch("/<int:exam_id>")
def update_exam(exam_id: int):
    require_teacher()
    return jsonify(exams.update_exam(exam_id, parse(ExamUpdate).changes()))


@bp.delete("/<int:exam_id>")
def delete_exam(exam_id: int):
    require_teacher()
    force = request.args.get("force", "").lower() in {"1", "true", "yes"}
    return jsonify(exams.delete_exam(exam_id, force=force))


@bp.get("/<int:exam_id>/roster")
def get_roster(exam_id: int):
    require_teacher()
    return jsonify({"roster": exams.roster_list(exam_id), "warnings": exams.overlap_warnings(exam_id)})


@bp.post("/<int:exam_id>/roster")
def add_roster(exam_id: int):
    require_teacher()
    return jsonify(exams.add_to_roster(exam_id, parse(RosterAdd).entries()))


@bp.delete("/<int:exam_id>/roster/<student_id>")
def remove_roster(exam_id: int, student_id: str):
    require_teacher()
    exams.remove_from_roster(exam_id, student_id)
    return "", 204
