"""Changing exams from the console: edit, extend, end now, delete, copy; the roster (pasted or
uploaded) and the student registry. Each change calls the service function of its token API call
(``lifecycle.update_exam`` and ``end_exam``, ``exams.delete_exam``, the roster's and the registry's
import in ``imports``); a refusal of the service layer is shown on the page the form was on."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import redirect, render_template, request, url_for
from pydantic import ValidationError

from .. import attendance, exams, imports, lifecycle, students
from ..api.validation import ExamCopy, ExamUpdate, check_schedule
from ..config import settings
from ..errors import NotFound, ProctorError, describe
from . import forms
from .console import bp, signed_in
from .exam_pages import exam_page

PICKER_FORMAT = "%Y-%m-%dT%H:%M"  # what a datetime-local input holds (minutes)
PAGE_SIZE = 100  # registry rows on a page
MAX_SHOWN = 500  # accepted rows listed in an import's report; the rest are counted


def picker_value(iso: str) -> str:
    """An exam time as the form's picker shows it: the exam office's time, to the minute."""
    return datetime.fromisoformat(iso).astimezone(settings().timezone).strftime(PICKER_FORMAT)


def _back_to_exam(exam_id: int):
    return redirect(url_for("console.exam_live_page", exam_id=exam_id, _anchor="exam-changes"), code=303)


def _form_problem(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


# --- the exam: edit, extend, end now, delete, copy ----------------------------------------------


@bp.route("/exams/<id:exam_id>/edit", methods=["GET", "POST"])
@signed_in
def edit_exam(exam_id: int):
    exam = exams.exam_detail(exam_id)
    form = _prefilled(exam, exam["title"])
    if not form.validate_on_submit():
        return _exam_form_page(exam, form, copying=False, problem=None, status=400 if form.errors else 200)
    try:
        body = _checked(form, ExamUpdate)
        lifecycle.update_exam(exam_id, _what_changed(exam, body))
    except (ValidationError, ProctorError) as err:
        return _exam_form_page(exam, form, copying=False, problem=_message(err), status=_status(err))
    return _back_to_exam(exam_id)


def _what_changed(exam: dict, body: ExamUpdate) -> dict:
    """The fields the teacher changed. A time left as the picker showed it is no change (the
    picker drops seconds), so a completed exam's title can still be corrected."""
    changes = {"title": body.title} if body.title != exam["title"] else {}
    for name in ("starts_at", "ends_at"):
        new = getattr(body, name)
        if picker_value(new.isoformat()) != picker_value(exam[name]):
            changes[name] = new
    return changes


@bp.route("/exams/<id:exam_id>/copy", methods=["GET", "POST"])
@signed_in
def copy_exam(exam_id: int):
    """A new exam of the same roster and seat settings, at the times chosen."""
    exam = exams.exam_detail(exam_id)
    form = _prefilled(exam, exams.copy_title(exam["title"]))
    if not form.validate_on_submit():
        return _exam_form_page(exam, form, copying=True, problem=None, status=400 if form.errors else 200)
    try:
        body = _checked(form, ExamCopy)
    except (ValidationError, ProctorError) as err:
        return _exam_form_page(exam, form, copying=True, problem=_message(err), status=_status(err))
    copy = exams.copy_exam(exam_id, body.title, body.starts_at, body.ends_at)
    return render_template("exam_created.html", exam=exams.exam_detail(copy["id"]), report=None,
                           warnings=exams.overlap_warnings(copy["id"]))


def _prefilled(exam: dict, title: str) -> forms.ExamForm:
    """The form with the title and the exam's times (a posted form keeps what was posted)."""
    return forms.ExamForm(data={"title": title, "starts_at": picker_value(exam["starts_at"]),
                                "ends_at": picker_value(exam["ends_at"])})


def _checked(form: forms.ExamForm, model: type[ExamUpdate] | type[ExamCopy]):
    """The form's title and times as the token API reads them (ValidationError or BadRequest)."""
    body = model.model_validate({"title": form.title.data, "starts_at": form.starts_at.data,
                                 "ends_at": form.ends_at.data})
    check_schedule(body.starts_at, body.ends_at)
    return body


def _exam_form_page(exam: dict, form, *, copying: bool, problem: str | None, status: int):
    return render_template("exam_form.html", exam=exam, form=form, copying=copying, problem=problem,
                           zone=settings().timezone), status


def _message(err: ValidationError | ProctorError) -> str:
    return err.message if isinstance(err, ProctorError) else describe(err)


def _status(err: ValidationError | ProctorError) -> int:
    return err.status if isinstance(err, ProctorError) else 400


@bp.post("/exams/<id:exam_id>/extend")
@signed_in
def extend_exam(exam_id: int):
    """A later end time, as the token API's PATCH sets it: the seats learn it from their next
    heartbeat."""
    form = forms.ExtendExam()
    if not form.validate_on_submit():
        return exam_page(exam_id, form_problem=_form_problem(form)), 400
    ends_at = datetime.fromisoformat(exams.exam_detail(exam_id)["ends_at"])
    try:
        lifecycle.update_exam(exam_id, {"ends_at": ends_at + timedelta(minutes=form.minutes.data)})
    except ProctorError as err:
        return exam_page(exam_id, problem=err.message), err.status
    return _back_to_exam(exam_id)


@bp.post("/exams/<id:exam_id>/end")
@signed_in
def end_exam(exam_id: int):
    form = forms.EndExam()
    if not form.validate_on_submit():
        return exam_page(exam_id, form_problem=_form_problem(form)), 400
    lifecycle.end_exam(exam_id)
    return _back_to_exam(exam_id)


@bp.post("/exams/<id:exam_id>/delete")
@signed_in
def delete_exam(exam_id: int):
    """Refused, as by the token API, while the exam's files are on disk, unless the teacher also
    ticked deleting them."""
    form = forms.DeleteExam()
    if not form.validate_on_submit():
        return exam_page(exam_id, form_problem=_form_problem(form)), 400
    try:
        exams.delete_exam(exam_id, force=form.with_files.data)
    except ProctorError as err:
        return exam_page(exam_id, problem=err.message), err.status
    return redirect(url_for("console.exam_list"), code=303)


# --- the roster ---------------------------------------------------------------------------------


@bp.route("/exams/<id:exam_id>/roster", methods=["GET", "POST"])
@signed_in
def exam_roster(exam_id: int):
    """The roster with its overlaps; students pasted or uploaded go onto it (and into the registry,
    as the token API's import with ``exam_id`` puts them), with the import's report."""
    exam = exams.exam_detail(exam_id)  # 404 before reading a file for an unknown exam
    form = forms.StudentsImport()
    result, problem, status = None, None, 200
    if form.validate_on_submit():
        result, problem, status = _import(form, exam_id)
    elif form.errors:
        status = 400
    return render_template("exam_roster.html", exam=exam, form=form, result=result,
                           problem=problem, roster=[r for r in attendance.exam_attendance(exam_id) if r["on_roster"]],
                           warnings=exams.overlap_warnings(exam_id)), status


@bp.route("/exams/<id:exam_id>/roster/<student_id>/remove", methods=["GET", "POST"])
@signed_in
def remove_from_roster(exam_id: int, student_id: str):
    """A confirmation page, then the removal (a session the student has stays, with its files)."""
    if request.method == "POST":
        exams.remove_from_roster(exam_id, student_id)
        return redirect(url_for("console.exam_roster", exam_id=exam_id), code=303)
    on_roster = {r["student_id"]: r for r in attendance.exam_attendance(exam_id) if r["on_roster"]}
    if student_id not in on_roster:
        raise NotFound(f"student {student_id} is not on the roster of exam {exam_id}")
    return render_template("roster_remove.html", exam=exams.exam_detail(exam_id), student=on_roster[student_id])


# --- the registry -------------------------------------------------------------------------------


@bp.get("/students")
@signed_in
def student_registry():
    return _registry_page(forms.StudentsImport(formdata=None), None, None, 200)


@bp.post("/students/import")
@signed_in
def import_students():
    form = forms.StudentsImport()
    if not form.validate_on_submit():
        return _registry_page(form, None, None, 400)
    return _registry_page(form, *_import(form, None))


def _registry_page(form, result: dict | None, problem: str | None, status: int):
    """The registry searched by id or name (``?q=``), a page of ``PAGE_SIZE`` at a time (``?page=``)."""
    query = request.args.get("q", "").strip()[:100]
    page = request.args.get("page", "1")
    page = int(page) if page.isascii() and page.isdigit() and 0 < len(page) < 7 else 1
    rows, total = students.search_students(query, PAGE_SIZE, (max(page, 1) - 1) * PAGE_SIZE)
    return render_template("students.html", form=form, result=result, problem=problem, query=query,
                           page=max(page, 1), pages=max(1, -(-total // PAGE_SIZE)), total=total,
                           students=rows, page_size=PAGE_SIZE), status


# --- an import and its report -------------------------------------------------------------------


def _import(form, exam_id: int | None) -> tuple[dict | None, str | None, int]:
    """(the report, None, 200) of the students of the form, written; (None, why, its status) when
    the file is refused; the report with 400 when no row was accepted (nothing was written)."""
    upload = form.file.data
    if upload:
        data, media_type, filename = upload.read(), (upload.mimetype or "").lower(), upload.filename or ""
    else:
        data, media_type, filename = form.text.data.encode(), "text/plain", ""
    try:
        report = imports.parse_table(data, media_type, filename)
        answer = imports.import_checked(report, exam_id)
    except ProctorError as err:
        return None, err.message, err.status
    return _report_rows(report, answer), None, 200 if report.accepted else 400


def _report_rows(report: imports.ImportReport, answer: dict) -> dict:
    """The import's answer, with its rows in the file's order: each refused one with its reason,
    each accepted student added to the roster or already on it (a registry import: accepted)."""
    roster = answer.get("roster")
    already = set(roster["already_on_roster"]) if roster else set()
    outcome = (lambda sid: "already" if sid in already else "added") if roster else (lambda sid: "accepted")
    accepted = [{**e, "row": row, "outcome": outcome(e["student_id"])}
                for e, row in zip(report.accepted[:MAX_SHOWN], report.accepted_rows)]
    refused = [{**r, "outcome": "refused"} for r in report.rejected]
    return {**answer, "rows": sorted(accepted + refused, key=lambda r: r["row"]),
            "unshown": max(0, len(report.accepted) - MAX_SHOWN), "warnings": roster["warnings"] if roster else []}
