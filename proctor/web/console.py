"""What every console page shares: the blueprint, who is asking (the signed-in account, the CSRF
check of every POST), the pages' headers, the template helpers, and errors.

Who may do what is decided here, and only here. Two kinds of people sign in: staff (an account,
``accounts``) and invigilators (one exam's password, ``invigilators``). Every page and every
change needs staff (``@signed_in``) but the read-only pages of one exam, which its invigilators
may see as well (``@watches_exam``), the management of other staff accounts, which needs an
administrator (``@administers``), and the sign-in pages. A page asked for by nobody signed in
answers a redirect to sign-in, a script's JSON call a 401; asked for by an invigilator (any change,
any other exam), a 403. Every POST carries the CSRF token (a form field, or the ``X-CSRFToken``
header of a script's call) or is refused with 400 before its view runs. Errors answer a page to a
browser and the token API's JSON shape to anything else. The pages themselves are in the modules
of ``PAGES`` (``auth``, ``exam_pages``, ``admission_pages``, ``invigilation``); a new area of pages
is a new module of views on ``bp`` imported by the package (see ``proctor/web/__init__.py``).
"""
from __future__ import annotations

from datetime import datetime
from functools import wraps

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from ..api.errors import OUTAGES, error_response, outage
from ..config import settings
from ..errors import ProctorError, RedisUnavailable
from . import accounts, i18n, invigilators

# Not /static: Flask's own static route of the app (which serves nothing) is there.
bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/assets")
csrf = CSRFProtect()

# Scripts, styles, images, recordings and calls from this origin only; no inline script or style,
# no frames, forms post only here.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# --- who is asking ----------------------------------------------------------------------------


# The browser session's keys of an invigilator: the exam, and which setting of its password.
INVIGILATING, INVIGILATOR_KEY = "invigilating", "invigilator_key"
# Of staff: the account, and which of its passwords it signed in with.
STAFF_ID, STAFF_KEY = "staff_id", "staff_key"


@bp.before_request
def _load_who_and_check_csrf():
    g.staff = None
    g.invigilating = None  # the exam id of a signed-in invigilator
    if session.unreadable:
        raise RedisUnavailable()
    if STAFF_ID in session:
        g.staff = accounts.staff_row(session[STAFF_ID])
        # The account was removed, or its password changed: its (other) sessions open nothing.
        if g.staff is None or session.get(STAFF_KEY) != accounts.session_key(g.staff):
            g.staff = None
            session.clear()
    elif INVIGILATING in session:
        if invigilators.still_opens(session[INVIGILATING], session.get(INVIGILATOR_KEY, "")):
            g.invigilating = session[INVIGILATING]
        else:  # the teacher changed or cleared the password
            session.clear()
    if request.method not in SAFE_METHODS:
        # A form is read whole: no larger than a roster the API would take (413 beyond).
        request.max_content_length = request.max_form_memory_size = settings().max_import_bytes
        csrf.protect()


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) != "text/html"


def signed_in(view):
    """Staff only: every change, and every page but the read-only ones of one exam."""
    @wraps(view)
    def guarded(**kwargs):
        if not may_change():
            return _not_allowed()
        return view(**kwargs)

    return guarded


def watches_exam(view):
    """A read-only page of one exam (its ``exam_id``): staff, or that exam's invigilators."""
    @wraps(view)
    def guarded(**kwargs):
        if not may_change() and g.invigilating != kwargs["exam_id"]:
            return _not_allowed()
        return view(**kwargs)

    return guarded


def administers(view):
    """An administrator only: managing other staff accounts."""
    @wraps(view)
    def guarded(**kwargs):
        if not may_change():
            return _not_allowed()
        if not is_administrator():
            return error_page(403, "forbidden", _("Only an administrator may manage staff accounts."),
                              translated=True)
        return view(**kwargs)

    return guarded


def is_administrator() -> bool:
    return g.get("staff") is not None and g.staff.role == accounts.ADMIN


def may_change() -> bool:
    """Whether the one asking may change things (the pages show their controls to them only; the
    views of the changes are ``@signed_in``)."""
    return g.get("staff") is not None


def _not_allowed():
    if g.invigilating is not None:
        return error_page(403, "forbidden", _("An invigilator may only watch their exam, and change nothing."),
                          translated=True)
    if wants_json():
        return error_response(401, "unauthorized", "sign in to the console first")
    return redirect(url_for("console.sign_in", next=request.path))


def sign_in_as_staff(row) -> None:
    """The browser session opens this account (at sign-in, and again after its own new password,
    which signs out its other sessions)."""
    session.rotate()  # an id someone planted before sign-in opens nothing after it
    session.update({STAFF_ID: row.id, STAFF_KEY: accounts.session_key(row)})


def sign_in_as_invigilator(exam_id: int, key: str) -> None:
    """A fresh browser session that opens this exam's read-only pages and nothing else."""
    locale = session.get("locale")
    session.clear()
    session.rotate()  # an id someone planted before sign-in opens nothing after it
    session.update({INVIGILATING: exam_id, INVIGILATOR_KEY: key})
    if locale:
        session["locale"] = locale


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
    return {"staff": g.get("staff"), "invigilating": g.get("invigilating"), "may_change": may_change(),
            "administers": is_administrator(),
            "languages": i18n.LANGUAGES, "locale": i18n.chosen_locale()}


@bp.app_template_filter("office_time")
def office_time(iso: str | None, seconds: bool = False) -> str:
    """An ISO time as the exam office reads it (PROCTOR_TIMEZONE)."""
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromisoformat(iso).astimezone(settings().timezone).strftime(shape) if iso else "—"


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
        503: _("A service the console needs is unavailable. Try again in a moment."),
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


def _outage(err: Exception):
    return _refused(outage(err))


for _fault in OUTAGES:
    bp.register_error_handler(_fault, _outage)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return error_page(err.code or 400, (err.name or "error").lower().replace(" ", "_"), err.description or "")
