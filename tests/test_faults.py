"""Faults: a full disk during an upload, Redis restarts under running workers."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import DATA, RUN_DIR, Process, error_code, free_port, start_worker, wait_until


@pytest.fixture
def tiny_disk():
    """Mount a 1 MiB tmpfs where the test says (needs root, as in CI); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_upload_is_507_and_leaves_nothing(api, tiny_disk):
    exam = api.create_exam()
    s = api.join(exam["id"], "fulldisk")
    seg_dir = tiny_disk(DATA / "segments" / str(s["session_id"]))
    data = os.urandom(2 * 1024 * 1024)

    r = api.upload(s, 0, data)
    assert r.status_code == 507, r.text
    assert error_code(r) == "insufficient_storage"
    assert list(seg_dir.iterdir()) == []
    assert api.session(s)["segments"] == 0

    # Once there is room again, the seat's retry succeeds.
    subprocess.run(["mount", "-o", "remount,size=8m", str(seg_dir)], check=True)
    assert api.upload(s, 0, data).status_code == 201
    assert api.session(s)["segments"] == 1


class PrivateRedis:
    """A redis-server of the test's own, with append-only persistence, that can be restarted."""

    def __init__(self):
        self.port = free_port()
        self.dir = RUN_DIR / f"redis-{self.port}"
        self.dir.mkdir()
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--save", ""]
        self.proc = Process(args, f"redis-{self.port}.log").start()
        import redis

        wait_until(lambda: redis.Redis.from_url(self.url).ping(), timeout=20, what="private redis")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@pytest.fixture
def private_redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_workers_resume_after_a_redis_restart_and_queued_work_survives(private_redis):
    """Workers have been seen to stop consuming after the broker came back: after a restart the
    status worker must take new work, and a message queued before the restart (append-only
    persistence) must still be delivered."""
    from celery import Celery

    app = Celery(broker=private_redis.url, backend=private_redis.url, set_as_current=False)

    def check() -> dict:
        return app.send_task("celery_tasks.status_check_task", queue="status_check").get(timeout=30)

    # The worker's settings come from its environment: it uses the private Redis, not the suite's.
    worker = start_worker("status_check", 1, "restart-test", ping_broker=private_redis.url, REDIS_URL=private_redis.url)
    try:
        assert "duration_s" in check()
        private_redis.stop()
        private_redis.start()
        # New work after the restart is consumed again.
        assert "duration_s" in wait_until(check, timeout=90, interval=1, what="a check after the Redis restart")

        worker.stop()
        queued = app.send_task("celery_tasks.status_check_task", queue="status_check")
        private_redis.stop()
        private_redis.start()
        worker = start_worker("status_check", 1, "restart-test", ping_broker=private_redis.url, REDIS_URL=private_redis.url)
        assert "duration_s" in queued.get(timeout=60)
    finally:
        worker.stop()


def test_full_disk_during_a_merge_is_retried_keeping_every_segment(api, merge_worker, tiny_disk, tmp_path):
    """The recordings directory (where a merge writes its scratch and output files) is full: the
    merge fails as transient, the recording waits queued saying so, every segment stays; once
    there is room the retry merges it."""
    from tests.media_helpers import make_clip
    from tests.test_recovery import paused

    exam = api.create_exam()
    s = api.join(exam["id"], "fulldisk-merge")
    for seq in range(3):
        clip = make_clip(tmp_path / f"f{seq}.mp4", seconds=2.0, size="640x480")
        assert api.upload(s, seq, clip.read_bytes(), "video/mp4").status_code == 201
    seg_dir = DATA / "segments" / str(s["session_id"])
    with paused(merge_worker):
        recordings_dir = tiny_disk(DATA / "recordings")
        subprocess.run(["mount", "-o", "remount,size=16k", str(recordings_dir)], check=True)
        worker = start_worker("video_merge", 1, "disk-full", PROCTOR_MERGE_RETRY_BASE_S="1",
                              PROCTOR_MERGE_MAX_ATTEMPTS="20")
        try:
            api.finish(s)
            view = wait_until(
                lambda: (v := api.session(s))["recording"]["status"] == "queued" and v["recording"]["error"] and v,
                timeout=120, interval=0.1, what="the merge to fail for want of space")
            assert "no space left on device" in view["recording"]["error"].lower(), view["recording"]
            assert view["state"] == "finished"
            assert len(list(seg_dir.iterdir())) == 3

            subprocess.run(["mount", "-o", "remount,size=64m", str(recordings_dir)], check=True)
            view = api.wait_for_state(s)
        finally:
            worker.stop()
    assert view["state"] == "merged" and view["recording"]["attempts"] >= 2, view
    assert view["recording"]["error"] is None
    assert len(list(recordings_dir.glob(f"session-{s['session_id']}.*"))) == 1
    assert not list(seg_dir.iterdir())


def test_both_workers_consume_after_two_quick_redis_restarts_with_the_configured_visibility(private_redis):
    """Idle workers whose broker restarts twice within seconds (a reconnect interrupted by a second
    loss of the connection) have been seen to stay connected and never consume again. Both of
    ours must take work afterwards, and the visibility timeout they run with, read back from the
    running workers, must be the configured one (it has been seen not to take effect)."""
    from celery import Celery

    from proctor.worker import MERGE_QUEUE, MERGE_TASK, STATUS_CHECK_TASK, STATUS_QUEUE, celery_app

    app = Celery(broker=private_redis.url, backend=private_redis.url, set_as_current=False)

    def status_check() -> dict:
        return app.send_task(STATUS_CHECK_TASK, queue=STATUS_QUEUE).get(timeout=30)

    def merge_of_no_session() -> dict:  # a merge that finds nothing to do, on the merge queue
        return app.send_task(MERGE_TASK, args=[2**31 - 1], queue=MERGE_QUEUE).get(timeout=30)

    env = {"REDIS_URL": private_redis.url}
    workers = {
        "twice-status": start_worker(STATUS_QUEUE, 1, "twice-status", ping_broker=private_redis.url, **env),
        "twice-merge": start_worker(MERGE_QUEUE, 2, "twice-merge", ping_broker=private_redis.url, **env),
    }
    try:
        assert "duration_s" in status_check()
        assert merge_of_no_session()["status"] == "skipped"
        destinations = [f"{name}@{socket.gethostname()}" for name in workers]
        wait_until(lambda: _idle(app, destinations), timeout=90, interval=1, what="both workers to be idle")

        for _ in range(2):
            private_redis.stop()
            private_redis.start()

        assert "duration_s" in wait_until(status_check, timeout=90, interval=1, what="a status check after two restarts")
        assert wait_until(merge_of_no_session, timeout=90, interval=1, what="a merge after two restarts")["status"] == "skipped"

        configured = celery_app.conf.broker_transport_options["visibility_timeout"]
        # This process's control connection may be one the restarts broke: polled until it answers.
        replies = wait_until(lambda: app.control.inspect(destination=destinations, timeout=5).conf(), timeout=30,
                             what="the workers' configuration")
        assert set(replies) == set(destinations), replies
        for conf in replies.values():
            assert conf["broker_transport_options"]["visibility_timeout"] == configured
            assert conf["result_backend_transport_options"]["visibility_timeout"] == configured
    finally:
        for worker in workers.values():
            worker.stop()


def _idle(app, destinations: list[str]) -> bool:
    """No task running, reserved or waiting for its countdown in any of these workers."""
    inspect = app.control.inspect(destination=destinations, timeout=2)
    held = [inspect.active(), inspect.reserved(), inspect.scheduled()]
    return all(replies is not None and set(replies) == set(destinations) and not any(replies.values())
               for replies in held)


def test_a_worker_holding_a_countdown_task_survives_a_redis_restart(private_redis):
    """A merge waiting out its grace or backoff is a countdown task the merge worker holds: a Redis
    restart then must not end the worker (celery 5.7.0 did: it closed the lost connection through
    its already-collected transport, hence the pin to 5.6). The held message itself comes back
    with the visibility timeout (the README says so): that is the broker's, not tested here."""
    from celery import Celery

    from proctor.worker import STATUS_CHECK_TASK, STATUS_QUEUE

    app = Celery(broker=private_redis.url, backend=private_redis.url, set_as_current=False)
    worker = start_worker(STATUS_QUEUE, 1, "held-countdown", ping_broker=private_redis.url,
                          REDIS_URL=private_redis.url)
    destination = [f"held-countdown@{socket.gethostname()}"]
    try:
        app.send_task(STATUS_CHECK_TASK, queue=STATUS_QUEUE, countdown=20)
        wait_until(lambda: any((app.control.inspect(destination=destination, timeout=2).scheduled() or {}).values()),
                   timeout=30, what="the countdown task to be held")
        private_redis.stop()
        private_redis.start()
        wait_until(lambda: not worker.alive() or app.send_task(STATUS_CHECK_TASK, queue=STATUS_QUEUE).get(timeout=10),
                   timeout=60, interval=1, what="a status check after the restart")
        assert worker.alive(), worker.log()[-2000:]
    finally:
        worker.stop()


def test_a_segment_the_database_refuses_to_record_leaves_no_file(api):
    """The database fails between the file being linked into place and its row being written (a
    trigger refuses the row): no file stays as if it were stored, and the retry stores it."""
    from sqlalchemy import text

    from proctor.db import engine

    exam = api.create_exam()
    s = api.join(exam["id"], "refused-row")
    sid = s["session_id"]
    mysql = engine().dialect.name == "mysql"
    body = (f"IF NEW.session_id = {sid} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF"
            if mysql else f"SELECT RAISE(ABORT, 'refused') WHERE NEW.session_id = {sid}")
    with engine().begin() as conn:
        conn.execute(text(f"CREATE TRIGGER refuse_segment BEFORE INSERT ON segments FOR EACH ROW BEGIN {body}; END"))
    try:
        r = api.upload(s, 0, MP4_HEAD)
        assert r.status_code >= 500
        assert not any((DATA / "segments" / str(sid)).rglob("*.mp4"))
    finally:
        with engine().begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_segment"))
    assert api.upload(s, 0, MP4_HEAD).status_code == 201
    assert len(list((DATA / "segments" / str(sid)).rglob("*.mp4"))) == 1


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + bytes(52)
