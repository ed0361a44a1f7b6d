"""Fixtures. Two tiers share one database (TEST_DATABASE_URL, else SQLite) and one real Redis:

- in-process: ``app`` (``create_app`` on the suite's settings) and ``api``, ``client`` (Flask's
  test client), for validation, permissions and error shapes;
- real processes: ``server`` (Gunicorn) and ``http_api``, ``merge_worker`` (Celery), where the
  process is the point: streamed uploads, crashes, merges, the whole stack.

The helpers (processes, polling, the API clients) are in ``tests.helpers``.
"""
from __future__ import annotations

import os

import pytest

from tests.helpers import (
    ADMIN_TOKEN,
    Api,
    AppTransport,
    HttpTransport,
    PoolDiscipline,
    install_environment,
    migrate_from_nothing,
    start_gunicorn,
    start_worker,
)


def pytest_configure(config):
    # Before any test module imports proctor: its settings, and prometheus_client's multiprocess
    # mode, are read from the environment.
    install_environment()


@pytest.fixture(scope="session", autouse=True)
def fresh_state():
    """An empty Redis db and a database migrated from nothing, once per run."""
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    migrate_from_nothing(os.environ["DATABASE_URL"])
    yield


@pytest.fixture(autouse=True)
def one_pooled_connection_at_a_time():
    """No call of the app's, in any test, takes a second pooled connection while it holds one.

    Under Gunicorn's gevent worker each request is a greenlet: fifteen of them each holding one
    connection and waiting for a second exhaust a worker's pool, and all of them wait the pool's
    10 s and answer 503 (seen at a hall's login burst on MariaDB, from one nested read).
    """
    with PoolDiscipline() as discipline:
        yield
    assert not discipline.nested, "a second pooled connection taken while holding one:\n" + discipline.nested[0]


@pytest.fixture(scope="session")
def suite_settings():
    """The suite's settings, as the child processes read them from the environment."""
    from proctor.config import load_settings

    return load_settings(os.environ)


@pytest.fixture(scope="session")
def app(suite_settings):
    from proctor.app import create_app

    return create_app(suite_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api(app):
    """The token API through Flask's test client, in this process."""
    return Api(AppTransport(app), ADMIN_TOKEN)


@pytest.fixture
def seat_config(api):
    """For a test that changes the seat settings (global, read by every seat): back to the
    defaults afterwards, whatever happened."""
    yield
    assert api.put("/api/admin/seat-config", "teacher", json={}).status_code == 200


@pytest.fixture
def settings_changed(suite_settings):
    """``settings_changed(**fields)`` makes them this process's settings for one test (for code
    reading ``proctor.config.settings()``), and returns them; the suite's come back afterwards."""
    from proctor import config

    previous = config.settings()
    yield lambda **changes: config.configure(suite_settings.replace(**changes))
    config.configure(previous)


@pytest.fixture
def app_with(settings_changed):
    """``app_with(**fields)``: a separate app built on the suite's settings so changed."""
    from proctor.app import create_app

    return lambda **changes: create_app(settings_changed(**changes))


@pytest.fixture(scope="session")
def server():
    """The app under real Gunicorn; its URL."""
    proc, base = start_gunicorn("gunicorn.log")
    yield base
    proc.stop()


@pytest.fixture
def http_api(server):
    """The token API over real HTTP to the ``server`` Gunicorn."""
    return Api(HttpTransport(server), ADMIN_TOKEN)


@pytest.fixture(scope="session")
def merge_worker():
    proc = start_worker("video_merge", 2, "merge-test")
    yield proc
    proc.stop()
