"""Invigilators' side of an exam: the teacher sets, changes or clears the exam's invigilator
password on its page; an invigilator signs in with it at the exam's own sign-in page and then sees
that exam's live view only (what they may do is decided in ``console``)."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address

from ..api.limits import limiter
from . import forms, invigilators
from .auth import SIGN_INS_PER_ACCOUNT, SIGN_INS_PER_ADDRESS
from .console import bp, sign_in_as_invigilator, signed_in
from .exam_pages import exam_page


def _address_and_exam() -> str:
    return f"{get_remote_address()}/exam-{(request.view_args or {}).get('exam_id')}"


# Password guessing, counted as at the staff sign-in: per address and exam, and per address.
@bp.route("/exams/<id:exam_id>/invigilate", methods=["GET", "POST"])
@limiter.limit(SIGN_INS_PER_ACCOUNT, methods=["POST"], key_func=_address_and_exam, scope="console-invigilator")
@limiter.limit(SIGN_INS_PER_ADDRESS, methods=["POST"], scope="console-invigilator-address")
def invigilator_sign_in(exam_id: int):
    """Says nothing of the exam (not even whether it exists) before the password is right."""
    form = forms.InvigilatorSignIn()
    failed = False
    if form.validate_on_submit():
        key = invigilators.authenticate(exam_id, form.password.data)
        if key is not None:
            sign_in_as_invigilator(exam_id, key)
            return redirect(url_for("console.exam_live_page", exam_id=exam_id))
        failed = True
    return (render_template("invigilator_sign_in.html", form=form, failed=failed, exam_id=exam_id),
            401 if failed else 200)


@bp.post("/exams/<id:exam_id>/invigilator-password")
@signed_in
def set_invigilator_password(exam_id: int):
    form = forms.InvigilatorPassword()
    if not form.validate_on_submit():
        return exam_page(exam_id, password_form=form), 400
    invigilators.set_password(exam_id, form.password.data)
    return redirect(url_for("console.exam_live_page", exam_id=exam_id, _anchor="invigilators"), code=303)


@bp.post("/exams/<id:exam_id>/invigilator-password/clear")
@signed_in
def clear_invigilator_password(exam_id: int):
    invigilators.clear_password(exam_id)
    return redirect(url_for("console.exam_live_page", exam_id=exam_id, _anchor="invigilators"), code=303)
