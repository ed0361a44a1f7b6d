"""Signing in and out, and the language of the pages."""
from __future__ import annotations

from flask import g, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address

from ..api.limits import limiter
from . import accounts, forms, i18n
from .console import bp, sign_in_as_staff

# Password guessing: a person mistypes a few times a minute, a script thousands. Per address and
# account (nobody elsewhere can lock an account out), and per address for all accounts (an exam
# office behind one NAT address signs in far less often than this).
SIGN_INS_PER_ACCOUNT = "10 per minute"
SIGN_INS_PER_ADDRESS = "60 per minute"


@bp.get("/")
def index():
    if g.invigilating is not None:
        return redirect(url_for("console.exam_live_page", exam_id=g.invigilating))
    return redirect(url_for("console.exam_list" if g.staff else "console.sign_in"))


def _address_and_account() -> str:
    return f"{get_remote_address()}/{accounts.normal_username(request.form.get('username', ''))[:64]}"


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(SIGN_INS_PER_ACCOUNT, methods=["POST"], key_func=_address_and_account, scope="console-sign-in")
@limiter.limit(SIGN_INS_PER_ADDRESS, methods=["POST"], scope="console-sign-in-address")
def sign_in():
    form = forms.SignIn()
    failed = False
    if form.validate_on_submit():
        row = accounts.authenticate(form.username.data, form.password.data)
        if row is not None:
            sign_in_as_staff(row)
            return redirect(_local_path(request.args.get("next")) or url_for("console.exam_list"))
        failed = True
    return render_template("sign_in.html", form=form, failed=failed), 401 if failed else 200


@bp.post("/sign-out")
def sign_out():
    session.clear()
    return redirect(url_for("console.sign_in"))


@bp.post("/language")
def choose_language():
    choice = request.form.get("locale", "")
    if choice in i18n.LANGUAGES:
        session["locale"] = choice
        if g.staff is not None:
            accounts.set_locale(g.staff.id, choice)
    return redirect(_local_path(request.form.get("next")) or url_for("console.index"))


def _local_path(raw: str | None) -> str | None:
    """A path on this site to go back to; anything else (another site, a scheme) is ignored."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return None
