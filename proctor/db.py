"""This process's database engine.

SQLite for a zero-configuration start, MariaDB/MySQL (pymysql) in production; the tables are in
``proctor.schema``.
"""
from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from .config import settings

_engine: Engine | None = None
_engine_key: tuple[int, str] | None = None


def _sqlite_pragmas(dbapi_conn, _record):
    # WAL lets the web workers read while a Celery worker writes; busy_timeout makes concurrent
    # writers wait instead of failing with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pool_pre_ping and recycle survive a MariaDB restart and its wait_timeout.
    return create_engine(url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=10)


def engine() -> Engine:
    """This process's engine, created lazily, anew after a fork and when the settings change.

    Gunicorn and Celery prefork children must not share the parent's connections.
    """
    global _engine, _engine_key
    key = (os.getpid(), settings().database_url)
    if _engine is None or _engine_key != key:
        if _engine is not None:
            _engine.dispose(close=key[0] == _engine_key[0])
        _engine = make_engine(key[1])
        _engine_key = key
    return _engine
