"""Test fixtures: a real Gunicorn server, real Celery workers, real Redis, SQLite or MariaDB.

The database is chosen by TEST_DATABASE_URL (unset: a SQLite file in a temporary directory);
`scripts/test.sh` runs the whole suite once per database. Redis is the one at TEST_REDIS_URL
(default db 15 of the local server) with a key prefix of its own, flushed at the start.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(tempfile.mkdtemp(prefix="proctor-test-"))
ADMIN_TOKEN = "test-admin-token-0123456789"

os.environ.update(
    {
        "PROCTOR_DATA_DIR": str(RUN_DIR / "data"),
        "PROCTOR_LOG_DIR": str(RUN_DIR / "logs"),
        "PROCTOR_RUN_DIR": str(RUN_DIR / "run"),
        # Several Gunicorn workers and Celery processes: metrics are aggregated through files.
        "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        "PROCTOR_REDIS_PREFIX": "proctor-test:",
        "PROCTOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "PROCTOR_MERGE_GRACE_S": "3",
        "PROCTOR_OFFLINE_AFTER_S": "60",
    }
)
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
else:
    os.environ["DATABASE_URL"] = f"sqlite:///{RUN_DIR / 'data' / 'proctor.db'}"
for _d in ("logs", "run", "prometheus"):
    (RUN_DIR / _d).mkdir(parents=True, exist_ok=True)

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - keep polling; report the last error
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def _reset_database() -> None:
    from sqlalchemy import text

    from proctor.db import make_engine, metadata

    engine = make_engine(os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True)


@pytest.fixture(scope="session", autouse=True)
def fresh_state():
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    _reset_database()
    yield


class Process:
    """A child process in its own process group, stopped (and reaped) at teardown."""

    def __init__(self, args: list[str], log_name: str, env: dict | None = None):
        self.log_path = RUN_DIR / "logs" / log_name
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gunicorn(log_name: str, workers: int = 2, **env: str) -> tuple[Process, str]:
    """The app under real Gunicorn (gthread workers, as in production); returns it and its URL
    once /health answers (with any status: 503 is an answer too)."""
    import requests

    port = free_port()
    proc = Process(
        [str(BIN / "gunicorn"), "-c", "gunicorn_config.py", "server:app"],
        log_name,
        env={"PROCTOR_BIND": f"127.0.0.1:{port}", "PROCTOR_WEB_WORKERS": str(workers), **env},
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.alive() and requests.get(f"{base}/health", timeout=10).status_code,
            timeout=60,
            what="gunicorn to answer /health",
        )
    except AssertionError:
        proc.stop()
        raise AssertionError("gunicorn did not start:\n" + proc.log()[-3000:]) from None
    return proc, base


@pytest.fixture(scope="session")
def server():
    proc, base = start_gunicorn("gunicorn.log")
    yield base
    proc.stop()


def start_worker(queue: str, concurrency: int, name: str, ping_broker: str | None = None) -> Process:
    proc = Process(
        [
            str(BIN / "celery"), "-A", "celery_config.celery_app", "worker",
            "-Q", queue, "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel=INFO",
            "--without-gossip", "--without-mingle",
        ],
        f"worker-{name}.log",
    ).start()
    return wait_worker_ready(proc, name, ping_broker)


def wait_worker_ready(proc: Process, name: str, ping_broker: str | None = None) -> Process:
    """Poll until the worker answers a ping (on ``ping_broker``, default the suite's Redis)."""
    if ping_broker:
        from celery import Celery

        celery_app = Celery(broker=ping_broker, set_as_current=False)
    else:
        from celery_config import celery_app

    def answers():
        if not proc.alive():
            raise AssertionError("worker exited:\n" + proc.log()[-3000:])
        return celery_app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=1)

    try:
        wait_until(answers, timeout=60, interval=0.5, what=f"celery worker {name}")
    except AssertionError:
        proc.stop()  # never leave a half-started worker consuming another run's queue
        raise
    return proc


@pytest.fixture(scope="session")
def merge_worker():
    proc = start_worker("video_merge", 2, "merge-test")
    yield proc
    proc.stop()


@pytest.fixture
def api(server):
    from tests.client import Api

    return Api(server, ADMIN_TOKEN)
