"""A hall of unchanged desktop seats loses nothing: restarts, late and out-of-order uploads, the
exam's end, a logout by mistake, one NAT address for the whole hall.

Seats are ``tests.original_seat.OriginalSeat``: the original client's behaviour (its naive local
clock, its in-memory counter, its upload queue). The whole stack is real: Gunicorn serving the
office's zone (Asia/Shanghai, not the host's UTC), a status worker and Beat on the status queue,
the merge worker, Redis, and the suite's database. Every test asserts that each segment the seats
sent is in a merged recording that lasts as long as they did together, with no gap.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import BIN, Api, HttpTransport, Process, start_gunicorn, start_worker, unique, wait_until
from tests.media_helpers import make_clip
from tests.original_seat import OriginalSeat

ZONE = ZoneInfo("Asia/Shanghai")
END_GRACE_S = 20
CLIP_S = 1.0
HALL_ENV = {"PROCTOR_TIMEZONE": "Asia/Shanghai", "PROCTOR_END_GRACE_S": str(END_GRACE_S)}


@pytest.fixture(scope="module")
def hall(merge_worker):
    """Gunicorn in the office's zone, the status worker and Beat: the hall's server."""
    web, base = start_gunicorn("gunicorn-hall.log", **HALL_ENV)
    status = start_worker("status_check", 1, "status-hall", **HALL_ENV)
    beat = Process([str(BIN / "celery"), "-A", "celery_config.celery_app", "beat", "--loglevel=INFO"],
                   "beat-hall.log", env=HALL_ENV).start()
    yield base
    for proc in (beat, status, web):
        proc.stop()


@pytest.fixture
def teacher(hall) -> Api:
    return Api(HttpTransport(hall))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Self-contained mp4 segments without sound, as the original client's recorder writes them;
    each a different picture so a re-sent sequence really has other bytes."""
    folder = tmp_path_factory.mktemp("clips")
    patterns = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "yuvtestsrc"]
    return [make_clip(folder / f"clip{i}.mp4", seconds=CLIP_S, audio=False, rate=5, pattern=p)
            for i, p in enumerate(patterns)]


def status_check() -> dict:
    """One status check, run now by the real status worker."""
    from celery_config import celery_app

    return celery_app.send_task("celery_tasks.status_check_task", queue="status_check").get(timeout=60) or {}


def exam_for(teacher: Api, students: list[tuple[str, str]], ends_in_s: float = 3600) -> dict:
    """An exam running since a minute ago, ending ``ends_in_s`` from now."""
    return teacher.create_exam(title=unique("hall"), start_in_s=-60, length_s=60 + ends_in_s,
                               roster=[{"student_id": s, "name": n} for s, n in students])


def seat(hall: str, student: tuple[str, str]) -> OriginalSeat:
    return OriginalSeat(hall, student[0], student[1], ZONE)


def session_of(teacher: Api, exam_id: int, student_id: str) -> dict:
    found = [s for s in teacher.roster_sessions(exam_id) if s["student_id"] == student_id]
    assert len(found) == 1, found
    return teacher.session(found[0]["id"])


def assert_complete_recording(session: dict, segments_sent: int) -> None:
    recording = session["recording"]
    assert recording["status"] == "merged", recording
    assert recording["gaps"] == []
    assert len(recording["report"]["segments_used"]) >= 1
    # What the seats sent, end to end: each clip lasts CLIP_S.
    assert recording["duration"] == pytest.approx(segments_sent * CLIP_S, abs=0.5)


def test_times_are_naive_office_time_the_client_can_subtract(hall, teacher, clips):
    student = (unique("t"), "Lin Mei")
    exam = exam_for(teacher, [student])
    s = seat(hall, student)
    answer = s.login()
    assert answer["status"] == "success", answer
    ends = datetime.fromisoformat(exam["ends_at"]).astimezone(ZONE).replace(tzinfo=None, microsecond=0)
    assert datetime.fromisoformat(answer["end_time"]) == ends  # naive, in the office's zone
    assert timedelta(minutes=59) < s.remaining() <= timedelta(minutes=61)
    server_time = datetime.fromisoformat(teacher.get("/api/server_time").json()["server_time"])
    assert abs(server_time - s.now()) < timedelta(seconds=30)
    # A teacher's naive time is the office's local time too.
    naive = {"title": unique("naive"), "starts_at": "2030-01-01 09:00:00", "ends_at": "2030-01-01 11:00:00"}
    created = teacher.post("/api/exams", "teacher", json=naive).json()
    assert datetime.fromisoformat(created["starts_at"]) == datetime(2030, 1, 1, 9, tzinfo=ZONE)


def test_a_restart_mid_exam_counts_from_one_again_and_loses_nothing(hall, teacher, clips):
    student = (unique("r"), "Zhang Wei")
    exam = exam_for(teacher, [student])
    first = seat(hall, student)
    assert first.login()["status"] == "success"
    for clip in clips[:3]:
        first.record(clip)
    answers = first.send_queue(order=[1, 0, 2])  # its first upload arrives late, after seq 2
    assert [r.status_code for r in answers] == [200, 200, 200]
    second = first.restart()  # crashed and started again: counts from 1 again
    assert second.login()["status"] == "success"
    for clip in clips[3:5]:
        second.record(clip)
    assert [r.status_code for r in second.send_queue()] == [200, 200]
    assert second.logout()["status"] == "success"
    session = teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"])
    assert_complete_recording(session, 5)
    markers = session["recording"]["report"]["runs"]
    assert [m["run"] for m in markers] == [0, 1] and markers[1]["starts_at_segment"] == 3
    logins = teacher.get(f"/api/exams/{exam['id']}/logins", "teacher").json()["logins"]
    assert [e["kind"] for e in logins if e["student_id"] == student[0]] == ["login", "rejoin", "logout"]


def test_the_last_segment_after_the_end_then_logout_is_merged(hall, teacher, clips):
    student = (unique("e"), "Wang Fang")
    exam = exam_for(teacher, [student], ends_in_s=15)
    s = seat(hall, student)
    assert s.login()["status"] == "success"
    s.record(clips[0])
    assert [r.status_code for r in s.send_queue()] == [200]
    s.record(clips[1])  # recording while the exam runs; sent only after the end
    wait_until(lambda: s.remaining() <= timedelta(0), timeout=60, what="the seat's own end timer")
    status_check()  # the exam is completed; the session closes but still takes uploads
    beat = s.heartbeat()
    assert beat["http_status"] == 200 and s.remaining() <= timedelta(0), beat
    s.record(clips[2])  # the last, cut segment
    assert [r.status_code for r in s.send_queue()] == [200, 200]
    assert s.logout()["status"] == "success"
    assert_complete_recording(teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"]), 3)


def test_a_seat_that_never_logs_out_is_merged_when_the_upload_grace_ends(hall, teacher, clips):
    student = (unique("g"), "Li Na")
    exam = exam_for(teacher, [student], ends_in_s=10)
    s = seat(hall, student)
    assert s.login()["status"] == "success"
    s.record(clips[0])
    s.record(clips[1])
    assert [r.status_code for r in s.send_queue()] == [200, 200]
    wait_until(lambda: s.remaining() <= timedelta(0), timeout=60, what="the exam's end")
    # The seat's clock shows whole seconds: the server's end may still be a fraction away.
    closing = wait_until(lambda: status_check() and (v := session_of(teacher, exam["id"], student[0]))["state"]
                         == "closing" and v, timeout=60, what="the session to close")
    assert closing["closes_at"], closing
    closes_at = datetime.fromisoformat(closing["closes_at"])
    wait_until(lambda: datetime.now(closes_at.tzinfo) > closes_at, timeout=END_GRACE_S + 30, what="the grace")
    status_check()
    assert_complete_recording(teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"]), 2)


def test_a_logout_by_mistake_then_login_again_is_merged_again_with_everything(hall, teacher, clips):
    student = (unique("m"), "Chen Jie")
    exam = exam_for(teacher, [student])
    s = seat(hall, student)
    assert s.login()["status"] == "success"
    s.record(clips[0])
    s.record(clips[1])
    s.send_queue()
    assert s.logout()["status"] == "success"
    first = teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"])
    assert_complete_recording(first, 2)
    again = s.restart()
    assert again.login()["status"] == "success"  # the session reopens
    assert session_of(teacher, exam["id"], student[0])["state"] == "active"
    again.record(clips[2])
    again.record(clips[3])
    assert [r.status_code for r in again.send_queue()] == [200, 200]
    assert again.logout()["status"] == "success"
    merged = teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"])
    wait_until(lambda: teacher.session(merged["id"])["recording"]["merges"] == 2, what="the second merge")
    assert_complete_recording(teacher.session(merged["id"]), 4)


def test_a_segment_after_the_merge_is_stored_and_merged_again(hall, teacher, clips):
    student = (unique("l"), "Zhao Lei")
    exam = exam_for(teacher, [student])
    s = seat(hall, student)
    assert s.login()["status"] == "success"
    for clip in clips[:3]:
        s.record(clip)
    s.send_queue(order=[0, 1])  # the third failed and stays queued
    assert s.logout()["status"] == "success"
    first = teacher.wait_for_state(session_of(teacher, exam["id"], student[0])["id"])
    assert first["recording"]["duration"] == pytest.approx(2 * CLIP_S, abs=0.5)
    assert [r.status_code for r in s.send_queue()] == [200]  # the retry, after the merge
    wait_until(lambda: teacher.session(first["id"])["recording"]["merges"] == 2, timeout=120,
               what="the merge again")
    again = teacher.session(first["id"])
    assert_complete_recording(again, 3)
    assert "after the merge" in again["recording"]["note"]


def test_a_hall_of_500_seats_behind_one_address_logs_in_and_heartbeats(hall, teacher):
    students = [(unique("h"), f"Student {n}") for n in range(500)]
    exam_for(teacher, students)
    seats = [seat(hall, st) for st in students]
    with ThreadPoolExecutor(16) as pool:
        logins = list(pool.map(lambda x: x.login(), seats))
        beats = list(pool.map(lambda x: x.heartbeat(), seats))
    assert [a["http_status"] for a in logins] == [200] * 500, [a for a in logins if a["http_status"] != 200][:3]
    assert [a["http_status"] for a in beats] == [200] * 500, [a for a in beats if a["http_status"] != 200][:3]
