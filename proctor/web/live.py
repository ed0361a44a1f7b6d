"""What the live exam view shows, composed from the service functions the API serves: the roster
view (``attendance``) and the sessions' progress (``sessions.exam_sessions``). Each is a fixed
number of queries and one Redis call whatever the number of students, so one refresh of a hall of
500 costs the same round trips as one of 5.
"""
from __future__ import annotations

import re

from .. import attendance, exams, sessions, states

NOT_LOGGED_IN, FINISHED = "not_logged_in", "finished"
PRESENCES = ("online", "offline", NOT_LOGGED_IN, FINISHED)


def presence_of(row: dict) -> str:
    """online / offline while the session is open; not logged in without one; finished after."""
    if row["state"] == attendance.NOT_LOGGED_IN:
        return NOT_LOGGED_IN
    if row["state"] in states.OPEN:
        return row["presence"]
    return FINISHED


def missing_of(recording: dict | None) -> int | None:
    """Segments the merge knows to be missing (waiting for them, or gaps in the recording); None
    before the session finished."""
    if not recording:
        return None
    if "missing" in recording:
        return len(recording["missing"])
    return len(recording["gaps"])


def natural_order(student_id: str) -> list:
    """``s2`` before ``s10``: the digits in an id compare as numbers, as a person reads them."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"([0-9]+)", student_id)]


def exam_live(exam_id: int) -> dict:
    """The exam (its counts by presence) and one row per student, in the natural order of ids."""
    exam = exams.exam_detail(exam_id)
    progress = {s["id"]: s for s in sessions.exam_sessions(exam_id)}
    students = []
    for row in attendance.exam_attendance(exam_id):
        session = progress.get(row["session_id"]) or {}
        recording = session.get("recording")
        students.append({
            "student_id": row["student_id"],
            "name": row["name"],
            "on_roster": row["on_roster"],
            "session_id": row["session_id"],
            "state": row["state"],
            "presence": presence_of(row),
            "last_seen": row["last_seen"],
            "client_addr": row["client_addr"],
            "segments": row["segments"],
            "missing": missing_of(recording),
            "merge": recording["status"] if recording else None,
            "merge_progress": recording["progress"] if recording else None,
            "violations": row["violations"],
        })
    students.sort(key=lambda s: natural_order(s["student_id"]))
    counts = {p: 0 for p in PRESENCES}
    for s in students:
        counts[s["presence"]] += 1
    return {"exam": exam, "counts": counts, "students": students}


def exam_summary(exam_id: int) -> dict:
    """An exam for the exam list: its detail and how many students are online, offline, not
    logged in and finished (from the counts ``exams.exam_detail`` keeps, no per-student work)."""
    exam = exams.exam_detail(exam_id)
    by_state, total = exam["sessions"]["by_state"], exam["sessions"]["total"]
    still_open = sum(by_state.get(state, 0) for state in states.OPEN)
    exam["counts"] = {
        **exam["sessions"]["by_presence"],
        NOT_LOGGED_IN: max(0, exam["roster_size"] - total),
        FINISHED: total - still_open,
    }
    return exam
