"""The console's pages and the live view's JSON: sign-in and sign-out, the language, the exam
list, creating an exam with a pasted roster, and the live view of an exam.

Every page needs a signed-in account except the sign-in page; a page asked for without one answers
a redirect to sign-in, the live view's JSON a 401. Every POST carries the CSRF token (a form field,
or the ``X-CSRFToken`` header of a script's call) or is refused with 400 before its view runs.
Errors answer a page to a browser and the token API's JSON shape to anything else.
"""
from __future__ import annotations

from datetime import datetime
from functools import wraps

from flask import Blueprint, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from .. import exams, imports
from ..api.errors import error_response
from ..api.limits import limiter
from ..api.validation import ExamCreate, check_schedule
from ..config import settings
from ..errors import ProctorError, describe
from . import accounts, forms, i18n, live

# Not /static: Flask's own static route of the app (which serves nothing) is there.
bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")
csrf = CSRFProtect()

# Scripts, styles, images and calls from this origin only; no inline script or style, no frames,
# forms post only here.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Password guessing: a person mistypes a few times a minute, a script thousands. Per address and
# account (nobody elsewhere can lock an account out), and per address for all accounts (an exam
# office behind one NAT address signs in far less often than this).
SIGN_INS_PER_ACCOUNT = "10 per minute"
SIGN_INS_PER_ADDRESS = "60 per minute"
POLL_INTERVAL_MS = 3000


# --- who is asking ----------------------------------------------------------------------------


@bp.before_request
def _load_staff_and_check_csrf():
    g.staff = None
    if "staff_id" in session:
        g.staff = accounts.staff_row(session["staff_id"])
        if g.staff is None:  # the account was removed: its sessions open nothing
            session.clear()
    if request.method not in SAFE_METHODS:
        # A form is read whole: no larger than a roster the API would take (413 beyond).
        request.max_content_length = request.max_form_memory_size = settings().max_import_bytes
        csrf.protect()


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) != "text/html"


def signed_in(view):
    @wraps(view)
    def guarded(**kwargs):
        if g.staff is None:
            if wants_json():
                return error_response(401, "unauthorized", "sign in to the console first")
            return redirect(url_for("console.sign_in", next=request.path))
        return view(**kwargs)

    return guarded


@bp.after_request
def _page_headers(response):
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    # The CSRF check of a form posted over HTTPS compares the Referer with this site: send it,
    # to this site only.
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"  # entry codes and students' names
    return response


@bp.app_context_processor
def _page_context():
    return {"staff": g.get("staff"), "languages": i18n.LANGUAGES, "locale": i18n.chosen_locale()}


@bp.app_template_filter("office_time")
def office_time(iso: str | None) -> str:
    """An ISO time as the exam office reads it (PROCTOR_TIMEZONE)."""
    return datetime.fromisoformat(iso).astimezone(settings().timezone).strftime("%Y-%m-%d %H:%M") if iso else "—"


# --- errors -----------------------------------------------------------------------------------


def error_page(status: int, code: str, message: str, *, translated: bool = False):
    """The error as a page (to a browser) or the token API's JSON. A message of the service layer
    is in English: the page says what happened in the reader's language and shows it as a detail."""
    if wants_json():
        return error_response(status, code, message)
    summary = message if translated else _summary(status)
    detail = None if translated else message
    return render_template("error.html", status=status, summary=summary, detail=detail), status


def _summary(status: int) -> str:
    summaries = {
        403: _("You may not do this."),
        404: _("This does not exist (any more)."),
        409: _("This is not possible in the current state."),
        413: _("This is too large."),
        503: _("The database is unavailable. Try again in a moment."),
    }
    return summaries.get(status, _("The request was refused."))


@bp.errorhandler(CSRFError)
def _csrf_refused(_err):
    message = _("This form has expired or did not come from this site. Reload the page and try again.")
    return error_page(400, "csrf_failed", message, translated=True)


@bp.errorhandler(RateLimitExceeded)
def _too_many(_err):
    return error_page(429, "too_many_requests", _("Too many attempts. Wait a minute and try again."),
                      translated=True)


@bp.errorhandler(ProctorError)
def _refused(err: ProctorError):
    return error_page(err.status, err.code, err.message)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return error_page(err.code or 400, (err.name or "error").lower().replace(" ", "_"), err.description or "")


# --- signing in and out, language -------------------------------------------------------------


@bp.get("/")
def index():
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
            session.rotate()  # an id someone planted before sign-in opens nothing after it
            session["staff_id"] = row.id
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


# --- exams ------------------------------------------------------------------------------------


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
