"""The states of exams, sessions and recordings, and every transition between them.

One owner: other modules read these names and call these functions; none of them writes a
``state`` or ``status`` column itself. Each transition is a conditional UPDATE (``WHERE state IN
(the states it may leave)``) inside the caller's transaction, so two processes racing over one
session cannot move it along a path this module does not allow.

Session:    active ─exam ends→ closing ─finish, or upload grace over→ finished
            active ─finish→ finished ─start→ merging ─→ merged | partial | failed
            merging ─worker lost, or a transient failure→ finished;  failed ─teacher's re-queue→ finished
            finished | merging | merged | partial | failed ─seat logs in again→ active
            merged | partial | failed ─a segment arrives late→ finished (merged again)
Recording:  queued ─→ [waiting ─grace over or all arrived→] merging ─→ merged | partial | failed;
            merging ─transient failure (error kept)→ queued;
            failed ─→ queued;
            merged | partial ─retention→ expired;  merged | partial | failed ─archive→ archived
Exam:       pending ─starts_at→ active ─ends_at or ended by the teacher→ completed
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .clock import utcnow
from .schema import exams, recordings, sessions

# --- exams ---------------------------------------------------------------------------------------
PENDING, RUNNING, COMPLETED = "pending", "active", "completed"


def exam_status_at(starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    if now >= ends_at:
        return COMPLETED
    return RUNNING if now >= starts_at else PENDING


def start_due_exams(conn: Connection, now: datetime) -> int:
    return conn.execute(
        update(exams)
        .where(exams.c.status == PENDING, exams.c.starts_at <= now, exams.c.ends_at > now)
        .values(status=RUNNING)
    ).rowcount


def complete_due_exams(conn: Connection, now: datetime) -> int:
    return conn.execute(
        update(exams).where(exams.c.status.in_((PENDING, RUNNING)), exams.c.ends_at <= now).values(status=COMPLETED)
    ).rowcount


def complete_exam_now(conn: Connection, exam_id: int, now: datetime) -> None:
    """The teacher ends the exam: completed, and its end time is now unless it was earlier."""
    row = conn.execute(select(exams.c.status, exams.c.ends_at).where(exams.c.id == exam_id)).one()
    if row.status != COMPLETED:
        conn.execute(update(exams).where(exams.c.id == exam_id).values(status=COMPLETED, ends_at=min(row.ends_at, now)))


# --- sessions ------------------------------------------------------------------------------------
ACTIVE, CLOSING, FINISHED, MERGING = "active", "closing", "finished", "merging"
MERGED, PARTIAL, FAILED = "merged", "partial", "failed"
SESSION_STATES = (ACTIVE, CLOSING, FINISHED, MERGING, MERGED, PARTIAL, FAILED)
# The client is still recording or sending what it recorded: nothing is merged yet.
OPEN = (ACTIVE, CLOSING)
MERGEABLE = (FINISHED, MERGING)
REQUEUEABLE = (FINISHED, FAILED)
DONE = (MERGED, PARTIAL)
# A segment arriving now was not in the last merge: the session is merged again.
MERGED_ALREADY = (MERGED, PARTIAL, FAILED)

# --- recordings ----------------------------------------------------------------------------------
QUEUED, WAITING, EXPIRED, ARCHIVED = "queued", "waiting", "expired", "archived"
RECORDING_STATUSES = (QUEUED, WAITING, MERGING, MERGED, PARTIAL, FAILED, EXPIRED, ARCHIVED)
PLAYABLE = (MERGED, PARTIAL)
GONE = (ARCHIVED, EXPIRED)
# Nothing more will happen to it without the teacher: archiving may move its files.
SETTLED = (MERGED, PARTIAL, FAILED)


def close(conn: Connection, session_id: int, closes_at: datetime) -> bool:
    """active → closing: the exam ended; the client's last segments are taken until ``closes_at``."""
    return bool(conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.state == ACTIVE)
        .values(state=CLOSING, closes_at=closes_at)
    ).rowcount)


def finish(conn: Connection, session_id: int, last_seq: int | None, extra: dict | None = None) -> bool:
    """active|closing → finished, with its recording queued; False when the session was not open."""
    now = utcnow()
    changed = conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.state.in_(OPEN))
        .values(state=FINISHED, finished_at=now, last_seq=last_seq, **(extra or {}))
    ).rowcount
    if not changed:
        return False
    # Look before writing: an UPDATE that finds no row takes a gap lock on MariaDB/MySQL, and two
    # sessions finishing at once, each holding the gap the other's INSERT needs, deadlock (seen
    # at a hall's end). A plain read takes no lock; only the finish that moved this session gets here.
    if _has_recording(conn, session_id):
        _queue_recording(conn, session_id, now, note=None)
    else:
        conn.execute(recordings.insert().values(session_id=session_id, status=QUEUED, attempts=0, updated_at=now))
    return True


def _has_recording(conn: Connection, session_id: int) -> bool:
    return conn.execute(select(recordings.c.id).where(recordings.c.session_id == session_id)).first() is not None


def _queue_recording(conn: Connection, session_id: int, now: datetime, note: str | None) -> bool:
    """Queue an existing recording for a merge that will replace it (fresh attempts)."""
    values: dict = {"status": QUEUED, "attempts": 0, "error": None, "progress": None, "updated_at": now}
    if note:
        values["note"] = note
    return bool(conn.execute(update(recordings).where(recordings.c.session_id == session_id).values(**values)).rowcount)


def reopen(conn: Connection, session_id: int) -> bool:
    """→ active: a seat that logged out logs in again while its exam runs (ended by mistake).

    The recording so far stays; the next end merges everything again.
    """
    return bool(conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.state.not_in(OPEN))
        .values(state=ACTIVE, finished_at=None, last_seq=None, closes_at=None)
    ).rowcount)


def merge_again(conn: Connection, session_id: int, note: str) -> bool:
    """merged|partial|failed → finished with a queued recording: a segment came after the merge."""
    changed = conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.state.in_(MERGED_ALREADY))
        .values(state=FINISHED)
    ).rowcount
    if changed:
        _queue_recording(conn, session_id, utcnow(), note)
    return bool(changed)


def wait(conn: Connection, session_id: int, missing: list[int], merge_at: datetime, task_id: str | None) -> None:
    """queued|waiting → waiting: segments are missing and the grace to upload them runs until
    ``merge_at``; the report says which, for the teacher, until the merge replaces it."""
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id, recordings.c.status.in_((QUEUED, WAITING)))
        .values(status=WAITING, report={"missing": missing[:1000], "merge_at": merge_at.isoformat()},
                task_id=task_id, updated_at=utcnow())
    )


def start_attempt(conn: Connection, session_id: int, task_id: str | None) -> int:
    """finished|merging → merging for one more attempt; returns the attempts made so far."""
    now = utcnow()
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id)
        .values(status=MERGING, attempts=recordings.c.attempts + 1, started_at=now, progress=0.0,
                task_id=task_id, updated_at=now)
    )
    conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.state.in_(MERGEABLE)).values(state=MERGING)
    )
    return conn.execute(select(recordings.c.attempts).where(recordings.c.session_id == session_id)).scalar_one()


def record_progress(conn: Connection, session_id: int, fraction: float) -> None:
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id, recordings.c.status == MERGING)
        .values(progress=round(fraction, 3), updated_at=utcnow())
    )


def merged(conn: Connection, session_id: int, *, complete: bool, recording: dict) -> str:
    """merging → merged (every segment in it) or partial (gaps, skipped segments); returns which.

    A session reopened meanwhile stays active: the recording is kept and merged again later.
    """
    status = MERGED if complete else PARTIAL
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id)
        .values(status=status, progress=1.0, error=None, updated_at=utcnow(), merges=recordings.c.merges + 1,
                **recording)
    )
    conn.execute(update(sessions).where(sessions.c.id == session_id, sessions.c.state == MERGING).values(state=status))
    return status


def retry_later(conn: Connection, session_id: int, error: str) -> None:
    """merging → finished with a queued recording that says why: a transient failure (a full
    disk), retried after a backoff; the segments stay."""
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id, recordings.c.status == MERGING)
        .values(status=QUEUED, error=error[:2000], updated_at=utcnow())
    )
    conn.execute(update(sessions).where(sessions.c.id == session_id, sessions.c.state == MERGING).values(state=FINISHED))


def fail(conn: Connection, session_id: int, error: str) -> None:
    """→ failed: the segments stay and the teacher can queue the merge again."""
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id)
        .values(status=FAILED, error=error[:2000], updated_at=utcnow())
    )
    conn.execute(update(sessions).where(sessions.c.id == session_id, sessions.c.state.in_(MERGEABLE)).values(state=FAILED))


def requeue(conn: Connection, session_id: int, *, fresh_attempts: bool) -> None:
    """finished|merging|failed → finished with a queued recording: a lost merge found by
    reconcile, or the teacher's retry of a failed one (which starts its attempts afresh)."""
    conn.execute(
        update(sessions).where(sessions.c.id == session_id, sessions.c.state.in_((*MERGEABLE, FAILED)))
        .values(state=FINISHED)
    )
    if fresh_attempts:
        _queue_recording(conn, session_id, utcnow(), note=None)
    else:
        conn.execute(
            update(recordings).where(recordings.c.session_id == session_id).values(status=QUEUED, updated_at=utcnow())
        )


def expire(conn: Connection, session_id: int) -> None:
    """merged|partial → expired: retention deleted the file."""
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id, recordings.c.status.in_(PLAYABLE))
        .values(status=EXPIRED, path=None, updated_at=utcnow())
    )


def archived(conn: Connection, session_id: int, now: datetime) -> None:
    """→ archived: the file was moved to the backup directory and verified there."""
    conn.execute(
        update(recordings)
        .where(recordings.c.session_id == session_id)
        .values(status=ARCHIVED, path=None, updated_at=now)
    )
