"""Who may join an exam, from its page: a new entry code or none (invitations only), and "let this
student in" (the teacher's join), through the service functions the token API calls
(``proctor.admission``)."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from pydantic import ValidationError

from .. import admission, exams
from ..api.validation import Join
from ..errors import BadRequest, describe
from . import forms
from .console import bp, signed_in
from .exam_pages import exam_page

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
