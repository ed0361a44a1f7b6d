"""Faults: a full disk during an upload, a Redis restart under running workers."""
from __future__ import annotations

import os
import shutil
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
