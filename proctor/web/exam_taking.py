"""The browser exam page: a student takes an exam with only a browser (the token API's own client,
in ``static/exam.js``).

These pages are the student's, not the console's: nobody signs in here. ``/exam`` asks for the
exam's number; ``/exam/<id>`` asks for the proof of who the student is (the exam's entry code with
their student id, or their invitation code) and joins through the token API, with ``fetch``. The
page says nothing about the exam before the join has checked the proof (the same page answers for
any number), and the session token stays in the tab (``sessionStorage``), never in a URL. Every
string is translated here (Flask-Babel, the console's catalog); those the script needs are passed
to it in a JSON data block. The pages allow no inline script or style and call this origin only.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from ..api.converters import MAX_ID

bp = Blueprint("exam_taking", __name__, template_folder="templates")

# As the console's: scripts, styles and calls of this origin only (the preview of the shared screen
# is a MediaStream, which no URL rule governs).
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@bp.get("/exam")
def choose_exam():
    """Asks for the exam's number (a teacher may give out ``/exam/<id>`` directly instead)."""
    raw = request.args.get("exam", "").strip()
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID:
        return redirect(url_for("exam_taking.exam_page", exam_id=int(raw)))
    return render_template("exam_choose.html", refused=bool(raw))


@bp.get("/exam/<id:exam_id>")
def exam_page(exam_id: int):
    """The same page for every number: whether the exam exists is told by the join, after the
    proof."""
    return render_template("exam_take.html", exam_id=exam_id)


@bp.after_request
def _page_headers(response):
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
