"""Who may join an exam, from its page: a new entry code or none (invitations only), "let this
student in" (the teacher's join), and the students' invitation codes (issued, and printed as one
slip per student), through the service functions the token API calls (``proctor.admission``)."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from pydantic import ValidationError

from .. import admission, attendance, exams
from ..api.validation import Invite, Join
from ..errors import BadRequest, ProctorError, describe
from . import forms
from .console import bp, signed_in
from .exam_pages import exam_page
from .live import natural_order

SWITCH = {"1": True, "0": False}  # the form's value: a new code, or invitations only


@bp.post("/exams/<id:exam_id>/entry-code")
@signed_in
def change_entry_code(exam_id: int):
    enabled = SWITCH.get(request.form.get("enabled", ""))
    if enabled is None:
        raise BadRequest("enabled must be 1 (a new entry code) or 0 (invitations only)", code="invalid_body")
    admission.set_entry_code(exam_id, enabled)
    return redirect(url_for("console.exam_live_page", exam_id=exam_id, _anchor="admission"), code=303)


@bp.post("/exams/<id:exam_id>/let-in")
@signed_in
def let_student_in(exam_id: int):
    """The student's session, created (or taken over) by the teacher; its token is shown on this
    answer only (never in a URL; the page is not stored), to hand to the student."""
    form = forms.LetIn()
    if not form.validate_on_submit():
        return exam_page(exam_id, let_in_form=form), 400
    try:
        body = Join.model_validate({"student_id": form.student_id.data})
    except ValidationError as err:
        return exam_page(exam_id, let_in_form=form, problem=describe(err)), 400
    joined = admission.join(exam_id, admission.Proof(student_id=body.student_id), request.remote_addr,
                            by_teacher=True)
    return render_template("let_in.html", exam=exams.exam_detail(exam_id), student_id=body.student_id,
                           joined=joined), 201


# --- invitations ---------------------------------------------------------------------------------


@bp.get("/exams/<id:exam_id>/invitations")
@signed_in
def invitations_page(exam_id: int):
    """Who has an invitation and whether it was used (never a code: only its hash is kept), and the
    form that issues them. Staff only: the page is for handing out codes, invigilators watch the
    live view."""
    return _invitations_page(exam_id, forms.IssueInvitations(formdata=None))


@bp.post("/exams/<id:exam_id>/invitations")
@signed_in
def issue_invitations(exam_id: int):
    """New codes, shown on this answer only (not stored by the browser, never in a URL), as a page
    to print: one slip per student."""
    form = forms.IssueInvitations()
    if not form.validate_on_submit():
        return _invitations_page(exam_id, form), 400
    chosen = _chosen_students(exam_id, form)
    if not chosen and form.missing.data:
        return _invitations_page(exam_id, form, form_problem=_(
            "No student on the roster is without an invitation: tick the students who need a new code.")), 409
    if not chosen:
        return _invitations_page(exam_id, form, form_problem=_("Tick the students to invite.")), 400
    try:
        body = Invite.model_validate({"students": chosen})
    except ValidationError as err:
        return _invitations_page(exam_id, form, problem=describe(err)), 400
    try:
        issued = admission.issue_invitations(exam_id, body.students)
    except ProctorError as err:
        return _invitations_page(exam_id, form, problem=err.message), err.status
    return render_template("invitation_slips.html", exam=exams.exam_detail(exam_id), invitations=issued,
                           exam_url=url_for("exam_taking.exam_page", exam_id=exam_id, _external=True)), 201


def _chosen_students(exam_id: int, form: forms.IssueInvitations) -> list[str]:
    """The roster's students without an invitation, or the ticked ones."""
    if form.missing.data:
        return [r["student_id"] for r in _invitation_rows(exam_id) if r["on_roster"] and r["invitation"] is None]
    return form.students.data


def _invitation_rows(exam_id: int) -> list[dict]:
    """Each student on the roster, and anyone else invited, with their invitation (None: none),
    in the order a person reads ids."""
    issued = {i["student_id"]: i for i in admission.list_invitations(exam_id)}
    names = {r["student_id"]: r["name"] for r in attendance.exam_attendance(exam_id) if r["on_roster"]}
    return [{"student_id": s, "name": names.get(s), "on_roster": s in names, "invitation": issued.get(s)}
            for s in sorted(set(names) | set(issued), key=natural_order)]


def _invitations_page(exam_id: int, form, *, problem: str | None = None, form_problem: str | None = None):
    """(``problem``: the service layer's words, in English; ``form_problem``: the form's own.)"""
    return render_template("invitations.html", exam=exams.exam_detail(exam_id), form=form,
                           students=_invitation_rows(exam_id), problem=problem, form_problem=form_problem)
