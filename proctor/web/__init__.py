"""The console: the exam office's pages in a browser (the third front door, beside the token API
and the desktop seats' protocol).

Server-rendered templates calling the same service functions as the API; staff sign in with a
password (``accounts``) into a server-side browser session (``browser_sessions``); every form and
every state-changing call carries a CSRF token (Flask-WTF), checked for the console's routes only:
the token API and the seats' protocol authenticate with bearer tokens or addresses, never cookies,
so a cross-site request has nothing to ride on there. English and Simplified Chinese (``i18n``).
Every script and style is a file under ``static/``: the pages' Content-Security-Policy allows
nothing else.
"""
from __future__ import annotations

from flask import Flask

from ..config import settings
from . import browser_sessions, i18n, views


def register(app: Flask) -> None:
    app.config["SECRET_KEY"] = settings().secret_key
    # Checked by the console's own before_request (views.protect), not app-wide.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # The token lives as long as the browser session (which expires when idle): a live view left
    # open through a three-hour exam can still sign out.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    app.session_interface = browser_sessions.RedisSessionInterface()
    views.csrf.init_app(app)
    i18n.install(app)
    app.register_blueprint(views.bp)
