"""The status check, run by a real Celery worker on the status_check queue."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.helpers import start_worker, wait_until


@pytest.fixture(scope="module")
def status_worker():
    """A status worker that treats 2 s of silence as offline, so the test need not wait 60 s."""
    proc = start_worker("status_check", 1, "status-test", PROCTOR_OFFLINE_AFTER_S="2")
    yield proc
    proc.stop()


def run_check() -> dict:
    """One status check, run by the worker; returns once it has run."""
    from proctor.worker import celery_app

    return celery_app.send_task("celery_tasks.status_check_task", queue="status_check").get(timeout=30) or {}


def presence_events(session_id: int) -> list[str]:
    from proctor.db import engine
    from proctor.schema import presence_events as events

    with engine().connect() as conn:
        return conn.execute(
            select(events.c.kind).where(events.c.session_id == session_id).order_by(events.c.id)
        ).scalars().all()


def test_silent_student_goes_offline_and_comes_back(api, status_worker):
    exam = api.create_exam()
    quiet, chatty = api.join(exam["id"], "quiet"), api.join(exam["id"], "chatty")

    def quiet_is_offline():
        api.post(f"/api/sessions/{chatty['session_id']}/heartbeat", chatty["token"])
        run_check()
        return api.session(quiet)["presence"] == "offline"

    wait_until(quiet_is_offline, timeout=20, interval=0.5, what="the silent student to go offline")
    assert api.session(chatty)["presence"] == "online"
    assert presence_events(quiet["session_id"]) == ["online", "offline"]

    detail = api.get(f"/api/exams/{exam['id']}", "teacher").json()
    assert detail["sessions"]["by_presence"] == {"online": 1, "offline": 1}

    # The first heartbeat after silence brings the student back, with an event.
    api.post(f"/api/sessions/{quiet['session_id']}/heartbeat", quiet["token"])
    assert api.session(quiet)["presence"] == "online"
    assert presence_events(quiet["session_id"]) == ["online", "offline", "online"]

    # Another check right away changes nothing: no duplicated events.
    run_check()
    assert presence_events(quiet["session_id"]) == ["online", "offline", "online"]


def test_heartbeat_times_reach_the_database_in_batches(api, status_worker):
    from proctor.db import engine
    from proctor.schema import sessions

    exam = api.create_exam()
    s = api.join(exam["id"], "batched")
    api.post(f"/api/sessions/{s['session_id']}/heartbeat", s["token"])

    def stored():
        with engine().connect() as conn:
            return conn.execute(
                select(sessions.c.last_heartbeat_at).where(sessions.c.id == s["session_id"])
            ).scalar()

    assert stored() is None  # the heartbeat itself wrote nothing to the database
    run_check()
    assert stored() is not None


def test_exam_schedule_moves_and_completion_queues_merges(api, status_worker):
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import exams, sessions

    exam = api.create_exam(start_in_s=600, length_s=3600)
    assert exam["status"] == "pending"
    s = api.join(exam["id"], "scheduled")  # joining shortly before the start is allowed
    api.upload(s, 0, b"\0not really a video", "video/mp4")

    def schedule(starts_in_s: float, ends_in_s: float) -> None:
        """The clock moves on: the exam's times are now this far from now (a PATCH would move the
        status itself; the status check is what is tested)."""
        now = utcnow()
        with engine().begin() as conn:
            conn.execute(update(exams).where(exams.c.id == exam["id"]).values(
                starts_at=now + timedelta(seconds=starts_in_s), ends_at=now + timedelta(seconds=ends_in_s)))

    def status() -> str:
        return api.get(f"/api/exams/{exam['id']}", "teacher").json()["status"]

    run_check()
    assert status() == "pending"
    schedule(-1, 3600)
    assert status() == "pending"  # nothing but the check moves it
    run_check()
    assert status() == "active"
    schedule(-3600, -1)
    run_check()
    assert status() == "completed"
    # The exam's end closes the session; once its upload grace is over a check finishes it.
    assert api.session(s)["state"] == "closing"
    with engine().begin() as conn:
        conn.execute(update(sessions).where(sessions.c.id == s["session_id"]).values(closes_at=utcnow()))
    run_check()
    view = api.session(s)
    assert view["state"] not in {"active", "closing"} and view["last_seq"] == 0, view
    assert view["recording"] is not None  # its merge was queued


def test_status_check_never_runs_twice_at_once():
    from proctor import locks, status

    with locks.held("status_check", 30) as taken:
        assert taken
        assert status.run_status_check() == {"skipped": True}
    assert "skipped" not in status.run_status_check()


def test_beat_schedule_matches_the_design():
    from celery_config import celery_app

    entry = celery_app.conf.beat_schedule["status-check-every-30-seconds"]
    assert entry["task"] == "celery_tasks.status_check_task" and entry["schedule"] == 30.0
    assert entry["options"]["expires"] < 30
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit == 1800
    assert conf.task_soft_time_limit == 1500
    assert {q.name for q in conf.task_queues} == {"status_check", "video_merge"}


def test_visibility_timeout_reaches_the_transport():
    """The setting has been seen to be silently ignored by the transport: check the channel."""
    from celery_config import celery_app

    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        assert channel.visibility_timeout == celery_app.conf.task_time_limit + 1800


def test_offline_presence_is_rebuilt_after_redis_loses_it(api):
    """A Redis restart without persistence loses the presence set; the next check rebuilds it."""
    from proctor import presence, redis_client

    exam = api.create_exam()
    s = api.join(exam["id"], "amnesia")
    r = redis_client.client()
    for k in r.scan_iter(redis_client.key("presence", "*")):
        r.delete(k)
    assert presence.reseed_if_lost() >= 1
    assert r.zscore(redis_client.key("presence", "heartbeats"), str(s["session_id"])) is not None



def test_heartbeat_of_a_finished_session_is_not_tracked(api):
    from proctor import presence, redis_client

    exam = api.create_exam()
    s = api.join(exam["id"], "done-then-beating")
    api.post(f"/api/sessions/{s['session_id']}/heartbeat", s["token"])
    assert api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={}).status_code == 202
    assert api.session(s)["last_heartbeat_at"] is not None  # kept although tracking stopped
    r = api.post(f"/api/sessions/{s['session_id']}/heartbeat", s["token"])
    assert r.status_code == 200 and r.json()["tracked"] is False
    hb = redis_client.key("presence", "heartbeats")
    assert redis_client.client().zscore(hb, str(s["session_id"])) is None
    assert presence.heartbeat(s["session_id"]) is False
