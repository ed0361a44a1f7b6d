"""A seat's heartbeat from Redis alone (``proctor.seat_cache``), and every change that must reach
it at once: a move to another seat, an extension, a logout, a hand-over to a browser."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import event

from tests.helpers import Seat, seat_error, silence, unique


def queries_of(call) -> tuple[object, int]:
    """(the call's answer, the database statements it ran)."""
    from proctor.db import engine

    ran: list[str] = []

    def seen(conn, cursor, statement, *args):
        ran.append(statement)

    event.listen(engine(), "before_cursor_execute", seen)
    try:
        return call(), len(ran)
    finally:
        event.remove(engine(), "before_cursor_execute", seen)


def logged_in(api, addr: str) -> tuple[dict, Seat]:
    student = unique("cached")
    exam = api.create_exam(roster=[student])
    seat = Seat(api, addr, student, "Cached Seat")
    assert seat.login()["status"] == "success"
    return exam, seat


def test_a_seat_heartbeat_reads_no_database_once_cached(api):
    _, seat = logged_in(api, "127.0.5.1")
    assert seat.heartbeat().json() == {"status": "success"}  # the exam's end is read once
    r, statements = queries_of(seat.heartbeat)
    assert r.status_code == 200 and r.json() == {"status": "success"} and statements == 0


def test_an_extension_reaches_the_next_cached_heartbeat(api):
    exam, seat = logged_in(api, "127.0.5.2")
    seat.heartbeat()
    new_end = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=20)
    assert api.patch(f"/api/exams/{exam['id']}", json={"ends_at": new_end.isoformat()}).status_code == 200
    assert "end_time" in seat.heartbeat().json()


def test_a_seat_moved_away_from_is_refused_at_once(api):
    exam, old = logged_in(api, "127.0.5.3")
    old.heartbeat()
    new = Seat(api, "127.0.5.4", old.student_id, old.student_name)
    assert new.login()["status"] == "success"
    seat_error(old.heartbeat(), 403)
    assert new.heartbeat().status_code == 200


def test_a_logged_out_seat_is_told_its_session_ended(api):
    _, seat = logged_in(api, "127.0.5.5")
    seat.heartbeat()
    assert seat.logout().status_code == 200
    r = seat.heartbeat()
    seat_error(r, 409)


def test_a_seat_handed_to_a_browser_is_refused(api):
    exam, seat = logged_in(api, "127.0.5.6")
    seat.heartbeat()
    sid = api.roster_sessions(exam["id"])[0]["id"]
    silence(sid)
    assert api.post(f"/api/sessions/{sid}/release", "teacher").status_code == 200
    api.join(exam["id"], seat.student_id)
    seat_error(seat.heartbeat(), 403)
