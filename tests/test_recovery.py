"""Recovery paths: a lost queue, a poison merge, retention, and the health check when Redis is down."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import requests
from sqlalchemy import update

from tests.helpers import ADMIN_TOKEN, DATA, error_code, free_port, start_gunicorn, start_worker, wait_worker_ready
from tests.media_helpers import make_clip


@contextmanager
def paused(worker):
    """The merge worker stopped for the block, so the test decides what happens to the queue."""
    worker.stop()
    try:
        yield
    finally:
        wait_worker_ready(worker.start(), "merge-test")


def _lose_and_reconcile(api, tmp_path, jobs, merge, redis_client):
    exam = api.create_exam()
    s = api.join(exam["id"], "lost-queue")
    api.upload(s, 0, make_clip(tmp_path / "q.mp4").read_bytes(), "video/mp4")
    api.finish(s)
    sid = s["session_id"]
    assert jobs.is_queued(sid)
    assert merge.reconcile(stale_after_s=0)["requeued"] == []  # queued: left alone

    # What a Redis restart without persistence leaves: no message, no marker.
    r = redis_client.client()
    task_id = r.get(jobs.queued_marker(sid))
    lost = [raw for raw in r.lrange("video_merge", 0, -1) if task_id in raw]
    assert len(lost) == 1
    r.lrem("video_merge", 0, lost[0])
    r.delete(jobs.queued_marker(sid))

    assert sid in merge.reconcile(stale_after_s=0)["requeued"]
    assert jobs.is_queued(sid)
    assert api.session(s)["state"] == "finished"
    return s


def test_merge_lost_with_the_queue_is_requeued_and_completes(api, merge_worker, tmp_path):
    """A Redis restart without persistence loses the queued merge; reconcile brings it back and the
    worker merges it."""
    from proctor import jobs, merge, redis_client

    with paused(merge_worker):
        s = _lose_and_reconcile(api, tmp_path, jobs, merge, redis_client)
    view = api.wait_for_state(s)
    assert view["state"] == "merged" and view["recording"]["attempts"] == 1, view


def test_poison_merge_stops_after_the_attempt_limit(api, merge_worker, tmp_path):
    """A merge that keeps killing its worker comes back forever with acks_late; the attempt
    counter in the database ends it as failed, with the segments kept."""
    from proctor import merge
    from proctor.db import engine
    from proctor.schema import recordings

    exam = api.create_exam()
    s = api.join(exam["id"], "poison")
    api.upload(s, 0, make_clip(tmp_path / "p.mp4").read_bytes(), "video/mp4")
    sid = s["session_id"]
    with paused(merge_worker):
        api.finish(s)
        with engine().begin() as conn:  # three deliveries already died mid-merge
            conn.execute(update(recordings).where(recordings.c.session_id == sid).values(attempts=3))
        outcome = merge.merge_session(sid)
    assert outcome.status == "failed"
    view = api.session(s)
    assert view["state"] == "failed" and "gave up after 3 attempts" in view["recording"]["error"]
    assert len(list((DATA / "segments" / str(sid)).iterdir())) == 1


def test_retention_and_temp_sweep(api, merge_worker, tmp_path):
    from proctor import housekeeping
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import recordings

    exam = api.create_exam()
    s = api.join(exam["id"], "old-recording")
    api.upload(s, 0, make_clip(tmp_path / "r.mp4").read_bytes(), "video/mp4")
    api.finish(s)
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    path = DATA / "recordings" / f"session-{s['session_id']}.mp4"
    assert path.is_file() and view["recording"]["size"] == path.stat().st_size

    assert s["session_id"] not in housekeeping.expire_recordings(days=0)  # 0 keeps forever
    assert s["session_id"] not in housekeeping.expire_recordings(days=30)
    with engine().begin() as conn:
        conn.execute(
            update(recordings)
            .where(recordings.c.session_id == s["session_id"])
            .values(updated_at=utcnow() - timedelta(days=31))
        )
    assert s["session_id"] in housekeeping.expire_recordings(days=30)
    assert not path.exists()
    r = api.get(f"/api/sessions/{s['session_id']}/recording", "teacher")
    assert r.status_code == 410 and error_code(r) == "recording_expired"

    stale = DATA / "recordings" / ".tmp-session-999999-dead-merge.mp4"
    fresh = DATA / "recordings" / ".tmp-session-999998-live-merge.mp4"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    assert housekeeping.sweep_temp_files() >= 1
    assert not stale.exists() and fresh.exists()
    fresh.unlink()


def test_health_names_redis_when_it_is_down():
    """A web app whose Redis is gone answers 503 naming it (and keeps answering)."""
    proc, base = start_gunicorn("gunicorn-no-redis.log", workers=1,
                                REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        anonymous = requests.get(f"{base}/health", timeout=10)
        assert anonymous.status_code == 503 and anonymous.json() == {"status": "down"}
        r = requests.get(f"{base}/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        assert r.status_code == 503
        body = r.json()
        assert body["down"] == ["redis"] and body["checks"]["database"]["ok"] is True
        assert "connect" in body["checks"]["redis"]["error"].lower()

        # Calls that need the live state are an outage to retry, in each front door's shape.
        r = requests.post(f"{base}/api/sessions/1/heartbeat", headers={"Authorization": "Bearer x" * 3}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable", r.text
        assert int(r.headers["Retry-After"]) >= 1
        teacher = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        now = datetime.now(timezone.utc)
        requests.post(f"{base}/api/exams", headers=teacher, timeout=10, json={
            "title": "no redis", "starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat(),
            "roster": [{"student_id": "noredis", "name": "No Redis"}]}).raise_for_status()
        r = requests.post(f"{base}/api/login", json={"student_id": "noredis", "student_name": "No Redis"}, timeout=10)
        assert r.status_code == 503 and r.json()["status"] == "error", r.text
        r = requests.get(f"{base}/exams", cookies={"proctor_console": "x" * 43}, timeout=10, allow_redirects=False)
        assert r.status_code == 503 and "text/html" in r.headers["Content-Type"], r.text
        # What needs only the database still works.
        assert requests.get(f"{base}/api/exams", headers=teacher, timeout=10).ok
    finally:
        proc.stop()


def test_transient_failures_retry_then_fail_keeping_segments(api, merge_worker, tmp_path):
    """FFmpeg missing on the worker is transient: three attempts with backoff, then `failed` with
    the error text, the segments kept, and the teacher's re-queue works once FFmpeg is back."""
    exam = api.create_exam()
    s = api.join(exam["id"], "no-ffmpeg")
    api.upload(s, 0, make_clip(tmp_path / "t.mp4").read_bytes(), "video/mp4")
    with paused(merge_worker):
        broken = start_worker("video_merge", 1, "no-ffmpeg",
                              PROCTOR_FFMPEG="/nonexistent/ffmpeg", PROCTOR_MERGE_RETRY_BASE_S="0")
        try:
            api.finish(s)
            view = api.wait_for_state(s, timeout=60)
        finally:
            broken.stop()
    assert view["state"] == "failed"
    assert view["recording"]["attempts"] == 3 and "/nonexistent/ffmpeg" in view["recording"]["error"]
    assert len(list((DATA / "segments" / str(s["session_id"])).iterdir())) == 1

    assert api.post(f"/api/sessions/{s['session_id']}/merge", "teacher").status_code == 202
    view = api.wait_for_state(s)
    assert view["state"] == "merged" and view["recording"]["attempts"] == 1, view
