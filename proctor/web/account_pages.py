"""Staff accounts: an administrator creates them, sets a new password on one and removes one;
each person changes their own password and language on their account's page."""
from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..errors import BadRequest, ProctorError
from . import accounts, forms
from .console import administers, bp, sign_in_as_staff, signed_in


@bp.get("/accounts")
@administers
def accounts_page():
    return accounts_listing()


def accounts_listing(*, new_form=None, reset_forms=None, problem: str | None = None):
    """Every account, the form of a new one, and a new-password form for each (a form refused is
    shown again with its messages)."""
    rows = accounts.list_staff()
    reset_forms = reset_forms or {}
    return render_template(
        "accounts.html", accounts=rows, new_form=new_form or forms.NewAccount(formdata=None),
        reset_forms={r.id: reset_forms.get(r.id) or forms.ResetPassword(formdata=None, prefix=f"a{r.id}")
                     for r in rows},
        problem=problem, created=_just_created(rows))


def _just_created(rows) -> str | None:
    """The account the redirect after a creation names, if it exists (a link cannot make the page
    claim an account it does not list)."""
    name = request.args.get("created", "")
    return name if any(r.username == name for r in rows) else None


@bp.post("/accounts")
@administers
def create_account():
    form = forms.NewAccount()
    if not form.validate_on_submit():
        return accounts_listing(new_form=form), 400
    try:
        made = accounts.create_staff(form.username.data, form.password.data, form.role.data)
    except ProctorError as err:
        return accounts_listing(new_form=form, problem=err.message), err.status
    return redirect(url_for("console.accounts_page", created=made["username"]), code=303)


@bp.post("/accounts/<id:staff_id>/password")
@administers
def reset_password(staff_id: int):
    form = forms.ResetPassword(prefix=f"a{staff_id}")
    if not form.validate_on_submit():
        return accounts_listing(reset_forms={staff_id: form}), 400
    accounts.set_password(staff_id, form.password.data)
    if staff_id == g.staff.id:  # this browser stays signed in; the account's others do not
        sign_in_as_staff(accounts.staff_row(staff_id))
    return redirect(url_for("console.accounts_page", _anchor=f"account-{staff_id}"), code=303)


@bp.post("/accounts/<id:staff_id>/remove")
@administers
def remove_account(staff_id: int):
    try:
        accounts.remove_staff(staff_id, g.staff.id)
    except ProctorError as err:
        return accounts_listing(problem=err.message), err.status
    return redirect(url_for("console.accounts_page"), code=303)


@bp.route("/account", methods=["GET", "POST"])
@signed_in
def own_account():
    """One's own account: a new password (given the current one), and the language."""
    form = forms.OwnPassword()
    if not form.validate_on_submit():
        return render_template("account.html", form=form, changed=False), 400 if form.is_submitted() else 200
    try:
        row = accounts.change_own_password(g.staff.id, form.current.data, form.password.data)
    except BadRequest as err:
        if err.code != "wrong_password":
            raise
        form.current.errors.append(_("The current password is not right."))
        return render_template("account.html", form=form, changed=False), 400
    sign_in_as_staff(row)  # this browser stays signed in; the account's others do not
    return render_template("account.html", form=forms.OwnPassword(formdata=None), changed=True)
