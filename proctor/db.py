"""Schema (SQLAlchemy Core) and the engine.

The tables here are the source of truth for Alembic's migrations; the application never creates
tables itself (``alembic upgrade head`` does, and the zero-config start script runs it).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from .config import settings


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python, naive UTC in the database.

    MySQL's DATETIME and SQLite have no time zone; storing naive UTC and re-attaching UTC on the way
    out keeps both databases behaving the same. Microsecond precision on MySQL (fsp=6) so ordering
    of quick events survives.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

exams = Table(
    "exams",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    # The end time as first scheduled: legacy seats are told the end time once it differs.
    Column("scheduled_ends_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, default="pending"),
    Column("roster_restricted", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # Seat settings of this exam (default_url, delay_min, disable_new_tabs), issue 5.
    Column("settings", JSON),
    Index("ix_exams_status", "status"),
)

roster = Table(
    "roster",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exam_id", Integer, ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("name", String(200)),
    UniqueConstraint("exam_id", "student_id", name="uq_roster_exam_student"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exam_id", Integer, ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False, default="active"),
    Column("presence", String(8), nullable=False, default="online"),
    Column("joined_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_heartbeat_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("last_seq", Integer),
    Column("client_addr", String(64)),
    UniqueConstraint("exam_id", "student_id", name="uq_sessions_exam_student"),
    Index("ix_sessions_state", "state"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("captured_at", UTCDateTime),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("media_type", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False, default=utcnow),
    # Set once the merged recording is verified and the file removed; the row stays as metadata.
    Column("deleted_at", UTCDateTime),
    UniqueConstraint("session_id", "seq", name="uq_segments_session_seq"),
)

recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "session_id",
        Integer,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("status", String(16), nullable=False, default="queued"),
    Column("path", String(255)),
    Column("size", BigInteger),
    Column("duration", Float),
    Column("sha256", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("gaps", JSON),
    Column("report", JSON),
    Column("progress", Float),
    Column("task_id", String(64)),
    Column("started_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    Index("ix_recordings_status", "status"),
)

presence_events = Table(
    "presence_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_presence_events_session", "session_id"),
)

_engine: Engine | None = None
_engine_pid: int | None = None


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
    """This process's engine, created lazily and anew after a fork.

    Gunicorn and Celery prefork children must not share the parent's connections.
    """
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        if _engine is not None:
            _engine.dispose(close=False)
        _engine = make_engine(settings().database_url)
        _engine_pid = os.getpid()
    return _engine


# --- administration (issue 5) ---

students = Table(
    "students",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("student_id", String(64), nullable=False, unique=True),
    Column("name", String(200)),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
)

# The seat settings served by the legacy /api/config: one row (id 1), edited by the teacher.
seat_config = Table(
    "seat_config",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("config", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

# What ties a legacy seat (no token) to its session: the address it logged in from, and how the
# seat counts its segments (seq_offset 1 for seats counting from 1), decided at its first upload.
legacy_seats = Table(
    "legacy_seats",
    metadata,
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("client_addr", String(64), nullable=False),
    Column("seq_offset", Integer),
    Column("bound_at", UTCDateTime, nullable=False, default=utcnow),
)

login_events = Table(
    "login_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exam_id", Integer, ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE")),
    Column("student_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # login | rejoin | logout | refused
    Column("via", String(8), nullable=False),  # token | legacy
    Column("client_addr", String(64)),
    Column("flagged", Boolean, nullable=False, default=False),
    Column("detail", String(255)),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_login_events_exam", "exam_id", "student_id"),
)

screenshots = Table(
    "screenshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # periodic | frame | violation
    Column("captured_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False, default=utcnow),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("media_type", String(32), nullable=False),
    # Relative to the data directory; NULL once archived (archive_items says where it went).
    Column("path", String(255)),
    Index("ix_screenshots_session", "session_id"),
)

violations = Table(
    "violations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("occurred_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False, default=utcnow),
    Column("screenshot_id", Integer, ForeignKey("screenshots.id", ondelete="SET NULL")),
    Column("via", String(8), nullable=False),
    Index("ix_violations_session", "session_id"),
)

# An archive outlives its exam (no foreign key): it is the record of where the files went.
archives = Table(
    "archives",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exam_id", Integer, nullable=False),
    Column("exam_title", String(200)),
    Column("directory", Text, nullable=False),
    Column("files", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_archives_exam", "exam_id"),
)

archive_items = Table(
    "archive_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("archive_id", Integer, ForeignKey("archives.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # recording | screenshot
    Column("ref_id", Integer, nullable=False),
    Column("session_id", Integer),
    Column("source", String(255), nullable=False),
    Column("dest", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
)
