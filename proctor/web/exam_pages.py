"""The exams: their list, a new exam from a pasted roster, and the live view of one exam (its page
and the JSON the page polls)."""
from __future__ import annotations

from flask import jsonify, render_template
from pydantic import ValidationError

from .. import exams, imports
from ..api.validation import ExamCreate, check_schedule
from ..config import settings
from ..errors import ProctorError, describe
from . import forms, live
from .console import bp, signed_in

POLL_INTERVAL_MS = 3000


@bp.get("/exams")
@signed_in
def exam_list():
    summaries = [live.exam_summary(e["id"]) for e in exams.list_exams()]
    return render_template("exams.html", exams=summaries, zone=settings().timezone)


@bp.route("/exams/new", methods=["GET", "POST"])
@signed_in
def new_exam():
    form = forms.NewExam()
    if not form.validate_on_submit():
        return render_template("exam_new.html", form=form, report=None, problem=None)
    report = imports.parse_roster_text(form.roster.data) if form.roster.data.strip() else None
    if report is not None and report.rejected:
        return render_template("exam_new.html", form=form, report=report, problem=None), 400
    try:
        body = ExamCreate.model_validate({"title": form.title.data, "starts_at": form.starts_at.data,
                                          "ends_at": form.ends_at.data})
        check_schedule(body.starts_at, body.ends_at)
    except (ValidationError, ProctorError) as err:
        problem = err.message if isinstance(err, ProctorError) else describe(err)
        return render_template("exam_new.html", form=form, report=None, problem=problem), 400
    exam = exams.create_exam(body.title, body.starts_at, body.ends_at, report.accepted if report else None)
    return render_template("exam_created.html", exam=exam, report=report,
                           warnings=exams.overlap_warnings(exam["id"]))


@bp.get("/exams/<id:exam_id>")
@signed_in
def exam_live_page(exam_id: int):
    return render_template("exam_live.html", exam=exams.exam_detail(exam_id), zone=settings().timezone,
                           poll_ms=POLL_INTERVAL_MS, presences=live.PRESENCES)


@bp.get("/exams/<id:exam_id>/live")
@signed_in
def exam_live_data(exam_id: int):
    return jsonify(live.exam_live(exam_id))
