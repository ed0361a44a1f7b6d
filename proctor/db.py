"""This process's database engine.

SQLite for a zero-configuration start, MariaDB/MySQL (pymysql) in production; the tables are in
``proctor.schema``.

A database that cannot be reached (stopped, restarting, frozen, out of connections) surfaces as
``errors.DatabaseUnavailable``, which both front doors answer with 503 and Retry-After, and the
pool pings each connection before use so that calls succeed again as soon as the server is back,
without a restart.
"""
from __future__ import annotations

import logging
import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, ExceptionContext

from .config import settings
from .errors import DatabaseUnavailable

# How long a call waits on an unreachable MariaDB before it is answered 503. Connect covers the TCP
# connection; read and write every packet after it, the server's greeting included (a frozen
# server accepts the connection and then says nothing). Without them a frozen server holds each
# Gunicorn thread for as long as it stays frozen. No runtime query comes near 10 s.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10  # each read and each write
# Connections each process keeps, and at most opens: all of them kept, none opened for a burst and
# closed after it. A connection opened is a TCP and MariaDB handshake, and PyMySQL builds a TLS
# context for it (reading the system's CA certificates) whether the server offers TLS or not: the
# overflow connections of a pool of 5 + 10 were opened and closed all through a hall's login and
# finish bursts, and took a sixth of the web workers' CPU. 15 per process keeps the services
# (two web workers, three merge and two status processes, Beat) within MariaDB's default
# max_connections of 151.
POOL_SIZE = 15
# How long a call waits for a free pooled connection before it is answered 503.
POOL_TIMEOUT_S = 10

# MySQL/MariaDB error numbers that say the server is away, not that the statement is wrong: too
# many connections, shutdown in progress, connection killed, cannot connect (socket, host), gone
# away, lost during a query, disconnected for inactivity.
UNREACHABLE = frozenset({1040, 1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031})

log = logging.getLogger(__name__)

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


def is_unreachable(err: BaseException) -> bool:
    """Whether a driver error means the server is away (by MySQL error number)."""
    code = err.args[0] if err.args else None
    return isinstance(code, int) and code in UNREACHABLE


def _outage_as_unavailable(ctx: ExceptionContext) -> DatabaseUnavailable | None:
    # A failed pre-ping is the pool's own business: it reconnects, and only that failing is ours.
    if ctx.is_pre_ping or not (ctx.is_disconnect or is_unreachable(ctx.original_exception)):
        return None
    # The driver's text names the server's host and port: logged, never answered.
    log.warning("database unavailable: %s", ctx.original_exception)
    return DatabaseUnavailable()


def make_engine(url: str, *, read_timeout_s: int | None = None) -> Engine:
    """An engine on ``url``. ``read_timeout_s`` bounds each MariaDB read and write; the services'
    engine sets it, migrations do not (a long ALTER TABLE must not be cut off)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=POOL_SIZE, max_overflow=0,
                               pool_timeout=POOL_TIMEOUT_S)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        timeouts = {"connect_timeout": CONNECT_TIMEOUT_S}
        if read_timeout_s:
            timeouts.update(read_timeout=read_timeout_s, write_timeout=read_timeout_s)
        # pool_pre_ping and recycle survive a MariaDB restart and its wait_timeout.
        engine = create_engine(url, connect_args=timeouts, pool_pre_ping=True, pool_recycle=1800,
                               pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)
    event.listen(engine, "handle_error", _outage_as_unavailable)
    return engine


def engine() -> Engine:
    """This process's engine, created lazily, anew after a fork and when the settings change.

    Gunicorn and Celery prefork children must not share the parent's connections.
    """
    global _engine, _engine_key
    key = (os.getpid(), settings().database_url)
    if _engine is None or _engine_key != key:
        if _engine is not None:
            _engine.dispose(close=key[0] == _engine_key[0])
        _engine = make_engine(key[1], read_timeout_s=READ_TIMEOUT_S)
        _engine_key = key
    return _engine
