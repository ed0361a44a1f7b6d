"""The schema (SQLAlchemy Core tables).

The tables here are the source of truth for Alembic's migrations; the application never creates
tables itself (``alembic upgrade head`` does, and the zero-config start script runs it).
"""
from __future__ import annotations

from datetime import timezone

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
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

from .clock import utcnow


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
    # Seat settings of this exam (default_url, delay_min, disable_new_tabs).
    Column("settings", JSON),
    # The code the teacher gives the hall for joining through the token API; NULL: invitations
    # only. Kept readable: the teacher shows it to the whole room.
    Column("entry_code", String(16)),
    # The invigilators' password of this exam's read-only console view (werkzeug's scrypt hash,
    # never the password); NULL: no invigilator may sign in.
    Column("invigilator_password_hash", String(255)),
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
    # Set when the exam ended while the session was active: its client's last segments are still
    # accepted until then (or until it finishes).
    Column("closes_at", UTCDateTime),
    # The front door the session belongs to (token | legacy): the other door may not take it over
    # unless the teacher releases it (NULL).
    Column("door", String(8)),
    UniqueConstraint("exam_id", "student_id", name="uq_sessions_exam_student"),
    Index("ix_sessions_state", "state"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    # A desktop seat counts from 1 again after a restart: each of its logins is a run of its own.
    Column("run", Integer, nullable=False, default=0, server_default="0"),
    Column("seq", Integer, nullable=False),
    Column("captured_at", UTCDateTime),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("media_type", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False, default=utcnow),
    # Set once the merged recording is verified and the file removed; the row stays as metadata.
    Column("deleted_at", UTCDateTime),
    UniqueConstraint("session_id", "run", "seq", name="uq_segments_session_run_seq"),
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
    # Verified merges so far; above 1 the recording was merged again, ``note`` says why.
    Column("merges", Integer, nullable=False, default=0, server_default="0"),
    Column("note", Text),
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

# --- administration: registry, seats, login history, screenshots, violations, archives ---

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

# What ties a legacy seat (no token) to its session: the address it logged in from.
legacy_seats = Table(
    "legacy_seats",
    metadata,
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("client_addr", String(64), nullable=False),
    Column("bound_at", UTCDateTime, nullable=False, default=utcnow),
)

# Each login of a seat starts a run: the seat counts its segments from 1 again after a restart.
seat_runs = Table(
    "seat_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("run", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("client_addr", String(64)),
    UniqueConstraint("session_id", "run", name="uq_seat_runs_session_run"),
)

# A student's own code for joining one exam through the token API: one use, only its hash kept.
invitations = Table(
    "invitations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("exam_id", Integer, ForeignKey("exams.id", ondelete="CASCADE"), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("used_at", UTCDateTime),
    UniqueConstraint("exam_id", "student_id", name="uq_invitations_exam_student"),
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

# People of the exam office who sign in to the console (the browser's front door). Only a hash of
# the password is kept (werkzeug's scrypt); ``locale`` is the language the person chose, NULL
# for the browser's.
staff = Table(
    "staff",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin | teacher
    Column("locale", String(16)),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_sign_in_at", UTCDateTime),
)
