"""The console: the exam office's pages in a browser (the third front door, beside the token API
and the desktop seats' protocol).

Server-rendered templates calling the same service functions as the API; staff sign in with a
password (``accounts``) into a server-side browser session (``browser_sessions``); every form and
every state-changing call carries a CSRF token (Flask-WTF), checked for the console's routes only:
the token API and the seats' protocol authenticate with bearer tokens or addresses, never cookies,
so a cross-site request has nothing to ride on there. English and Simplified Chinese (``i18n``).
Every script and style is a file under ``static/``: the pages' Content-Security-Policy allows
nothing else.

A new page: a view on ``console.bp`` (in the module of its area, or a new module added to
``PAGES``) decorated ``@signed_in`` (staff only: every change) or, for a read-only page of one
exam that its invigilators may see too, ``@watches_exam`` (who may do what is decided in
``console`` only; a template shows change controls only ``if may_change``), calling the service functions the API calls; a template that
extends ``base.html`` with every string in ``_()``; the Chinese catalog updated as ``babel.cfg``
says (tests/test_console_i18n.py fails on a string left untranslated); tests in
tests/test_console*.py (in-process for permissions and CSRF, the browser for what needs one).
"""
from __future__ import annotations

from flask import Flask

from ..config import settings
from . import (
    account_pages,
    admission_pages,
    auth,
    browser_sessions,
    console,
    exam_admin_pages,
    exam_pages,
    exam_taking,
    i18n,
    invigilation,
    operations_pages,
    student_pages,
)

PAGES = (auth, exam_pages, exam_admin_pages, admission_pages, invigilation, student_pages, operations_pages,
         account_pages)  # modules of views on console.bp: importing them adds their routes


def register(app: Flask) -> None:
    app.config["SECRET_KEY"] = settings().secret_key
    # Checked by the console's own before_request (console.py), not app-wide.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # The token lives as long as the browser session (which expires when idle): a live view left
    # open through a three-hour exam can still sign out.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    app.session_interface = browser_sessions.RedisSessionInterface()
    console.csrf.init_app(app)
    i18n.install(app)
    app.register_blueprint(console.bp)
    app.register_blueprint(exam_taking.bp)  # the student's browser exam page
