"""The exams: their list, a new exam from a pasted roster, the live view of one exam (its page and
the JSON the page polls), and its login history."""
from __future__ import annotations

from flask import jsonify, render_template, request
from pydantic import ValidationError

from .. import exams, imports, logins
from ..api.validation import ExamCreate, check_schedule
from ..config import settings
from ..errors import ProctorError, describe
from . import forms, invigilators, live
from .console import bp, may_change, signed_in, watches_exam

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
@watches_exam
def exam_live_page(exam_id: int):
    return exam_page(exam_id)


def exam_page(exam_id: int, *, password_form=None, let_in_form=None, problem: str | None = None,
              form_problem: str | None = None) -> str:
    """The exam's page: its live view, and for staff the controls of the exam (a form refused is
    shown again with its messages; ``problem``: the service layer's words, in English;
    ``form_problem``: a form's own, in the reader's language)."""
    exam = exams.exam_detail(exam_id)
    controls = {}
    if may_change():
        controls = {
            "password_form": password_form or forms.InvigilatorPassword(formdata=None),
            "let_in_form": let_in_form or forms.LetIn(formdata=None),
            "has_invigilator_password": invigilators.has_password(exam_id),
            "problem": problem,
            "form_problem": form_problem,
        }
    return render_template("exam_live.html", exam=exam, zone=settings().timezone, poll_ms=POLL_INTERVAL_MS,
                           presences=live.PRESENCES, **controls)


@bp.get("/exams/<id:exam_id>/live")
@watches_exam
def exam_live_data(exam_id: int):
    return jsonify(live.exam_live(exam_id))


@bp.get("/exams/<id:exam_id>/logins")
@watches_exam
def exam_logins(exam_id: int):
    """Every login, rejoin, logout and refused call of the exam's students, refused and flagged
    lines marked (``?flagged=1``: those only; ``?student_id=``: one student's)."""
    flagged_only = request.args.get("flagged") == "1"
    student_id = request.args.get("student_id", "").strip()[:64] or None
    return render_template("exam_logins.html", exam=exams.exam_detail(exam_id), zone=settings().timezone,
                           flagged_only=flagged_only, student_id=student_id,
                           lines=logins.login_history(exam_id, student_id, flagged_only))
