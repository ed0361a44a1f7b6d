"""One student of an exam: the detail page (presence timeline, login history, violations and
screenshots, the recording player, the merge report, merging again) and the media it shows.

The page, its media and the JSON of the merge's progress are read-only pages of the exam
(``@watches_exam``: its invigilators see them too); merging again is a change (``@signed_in``),
through the service function the token API's ``POST /api/sessions/<id>/merge`` calls. The media
are the stored files as they are: the recording with the type its first bytes say and Range
requests (seeking), a screenshot with the image type checked when it was stored; both inline under
a name the server makes, never sniffed (``nosniff``) and under the console's CSP. A screenshot is
served only through the exam its session belongs to, so an exam's invigilator opens no other
exam's images by trying ids.
"""
from __future__ import annotations

from flask import jsonify, redirect, render_template, send_file, url_for

from .. import screenshots, sessions, states
from ..config import settings
from ..errors import NotFound
from . import student
from .console import bp, signed_in, watches_exam

POLL_INTERVAL_MS = 3000


@bp.get("/exams/<id:exam_id>/students/<student_id>")
@watches_exam
def student_page(exam_id: int, student_id: str):
    detail = student.student_detail(exam_id, student_id)
    session = detail["session"]
    recording = session["recording"] if session else None
    return render_template(
        "student.html", zone=settings().timezone, poll_ms=POLL_INTERVAL_MS,
        playable=bool(recording) and recording["status"] in states.PLAYABLE,
        following=bool(recording) and recording["status"] in student.MERGE_PENDING,
        mergeable=bool(session) and session["state"] in states.REQUEUEABLE,
        **detail)


@bp.get("/exams/<id:exam_id>/students/<student_id>/merge-state")
@watches_exam
def student_merge_state(exam_id: int, student_id: str):
    """The recording's state and progress, which the page polls while a merge is under way."""
    return jsonify(sessions.session_view(sessions.session_id_of(exam_id, student_id))["recording"])


@bp.post("/exams/<id:exam_id>/students/<student_id>/merge")
@signed_in
def merge_student_again(exam_id: int, student_id: str):
    sessions.requeue_merge(sessions.session_id_of(exam_id, student_id))
    return redirect(url_for("console.student_page", exam_id=exam_id, student_id=student_id,
                            _anchor="recording"), code=303)


@bp.get("/exams/<id:exam_id>/students/<student_id>/recording")
@watches_exam
def student_recording(exam_id: int, student_id: str):
    session_id = sessions.session_id_of(exam_id, student_id)
    path, media_type, sha256 = sessions.recording_file(session_id)
    extension = "webm" if media_type == "video/webm" else "mp4"
    return _never_sniffed(send_file(path, mimetype=media_type, conditional=True, etag=sha256, max_age=0,
                             download_name=f"recording-{session_id}.{extension}"))


@bp.get("/exams/<id:exam_id>/screenshots/<id:shot_id>")
@watches_exam
def student_screenshot(exam_id: int, shot_id: int):
    if sessions.session_row(screenshots.session_of(shot_id)).exam_id != exam_id:
        raise NotFound(f"screenshot {shot_id} does not exist")  # as if it did not: ids are guessable
    path, shot = screenshots.file_of(shot_id)
    extension = screenshots.EXTENSIONS[shot["media_type"]]
    return _never_sniffed(send_file(path, mimetype=shot["media_type"], conditional=True, etag=shot["sha256"],
                             max_age=0, download_name=f"screenshot-{shot_id}.{extension}"))


def _never_sniffed(response):
    """Shown as the type given (inline, under the server's name: send_file's download_name),
    whatever its bytes look like."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
