"""The merge job: one session's segments into one verified recording, exactly once.

``merge_session`` is what ``celery_tasks.merge_videos_task`` runs. The FFmpeg work itself is in
``proctor.media``; this module decides when to merge, keeps the database and the files
consistent, and makes repeated or concurrent deliveries harmless:

- a per-session lease (a Redis lock renewed while the merge runs) means two merges of one session
  never run at once, and a merge whose worker died frees the session within seconds;
- a finished state (merged/partial) makes a second delivery a no-op;
- an attempt counter in the database stops a merge that keeps killing its worker (poison loop).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy import select, update

from . import jobs, locks, media, storage
from .config import settings
from .db import engine, recordings, segments, sessions, utcnow

log = logging.getLogger(__name__)

LEASE_TTL_S = 30
DONE = ("merged", "partial")
MERGEABLE = ("finished", "merging")
PROGRESS_EVERY_S = 2.0


class Transient(Exception):
    """A failure worth retrying (I/O, timeout, a dependency briefly away)."""


@dataclass
class Outcome:
    session_id: int
    status: str  # merged | partial | failed | waiting | skipped
    detail: str = ""

    def as_dict(self) -> dict:
        return {"session_id": self.session_id, "status": self.status, "detail": self.detail}


def lease_name(session_id: int) -> str:
    return f"merge:{session_id}"


def merge_session(
    session_id: int, on_progress: Callable[[float], None] | None = None, task_id: str | None = None
) -> Outcome:
    """Merge a finished session's segments. Raises Transient for the caller to retry.

    ``task_id`` (the Celery task's) is recorded so the API can point at the task Flower shows.
    """
    lease = locks.Lease(lease_name(session_id), LEASE_TTL_S)
    if not lease.acquire():
        return Outcome(session_id, "skipped", "another merge of this session is running")
    try:
        jobs.clear_queued(session_id)
        return _merge_locked(session_id, on_progress, task_id)
    finally:
        lease.release()


def _merge_locked(session_id: int, on_progress, task_id: str | None) -> Outcome:
    session = _session(session_id)
    if session is None:
        return Outcome(session_id, "skipped", "session does not exist")
    if session.state in DONE:
        return Outcome(session_id, "skipped", f"already {session.state}")
    if session.state not in MERGEABLE:
        return Outcome(session_id, "skipped", f"session is {session.state}")
    rows = _segment_rows(session_id)
    gaps = _gaps(rows, session.last_seq)
    wait = _grace_left(session, gaps)
    if wait > 0:
        jobs.enqueue_merge(session_id, countdown=min(wait, 30))
        return Outcome(session_id, "waiting", f"missing seqs {gaps[:20]}; grace {wait:.0f}s left")
    attempts = _start_attempt(session_id, task_id)
    if attempts > settings().merge_max_attempts:
        fail(session_id, f"gave up after {attempts - 1} attempts")
        return Outcome(session_id, "failed", "too many attempts")
    if not rows:
        fail(session_id, "no segments were uploaded")
        return Outcome(session_id, "failed", "no segments")
    return _run_merge(session_id, rows, gaps, on_progress)


def _run_merge(session_id: int, rows, gaps: list[int], on_progress) -> Outcome:
    inputs = [
        media.Segment(seq=r.seq, path=storage.segment_path(session_id, r.seq, r.media_type), captured_at=r.captured_at)
        for r in rows
    ]
    missing_files = [s.seq for s in inputs if not s.path.is_file()]
    inputs = [s for s in inputs if s.path.is_file()]
    if not inputs:
        fail(session_id, f"segment files are missing on disk: {missing_files[:20]}")
        return Outcome(session_id, "failed", "segment files missing")
    output = storage.recording_base(session_id).with_suffix(".mp4")
    _remove_leftovers_of_dead_merges(output)
    try:
        report = media.merge_segments(
            inputs,
            output,
            ffmpeg=settings().ffmpeg,
            ffprobe=settings().ffprobe,
            progress=_progress_writer(session_id, on_progress),
        )
    except media.MediaTimeout as err:
        raise Transient(str(err)) from err
    except media.MediaError as err:
        fail(session_id, str(err))
        return Outcome(session_id, "failed", str(err))
    except OSError as err:
        raise Transient(f"{type(err).__name__}: {err}") from err
    status = _record_success(session_id, report, gaps, missing_files)
    _delete_merged_segments(session_id, inputs, report)
    return Outcome(session_id, status, f"{len(report.segments_used)} segments, {report.duration:.1f}s")


def _remove_leftovers_of_dead_merges(output) -> None:
    """A merge killed mid-way leaves its scratch files; the lease says none of ours is running."""
    output.parent.mkdir(parents=True, exist_ok=True)
    for leftover in output.parent.glob(f"{storage.TMP_PREFIX}{output.stem}-*"):
        storage.discard(leftover)


def _session(session_id: int):
    with engine().connect() as conn:
        return conn.execute(select(sessions).where(sessions.c.id == session_id)).first()


def _segment_rows(session_id: int):
    with engine().connect() as conn:
        rows = conn.execute(
            select(segments)
            .where(segments.c.session_id == session_id, segments.c.deleted_at.is_(None))
            .order_by(segments.c.seq)
        ).all()
    return rows


def _gaps(rows, last_seq: int | None) -> list[int]:
    if last_seq is None:
        return []
    present = {r.seq for r in rows}
    return [s for s in range(last_seq + 1) if s not in present]


def _grace_left(session, gaps: list[int]) -> float:
    if not gaps or session.finished_at is None:
        return 0.0
    deadline = session.finished_at + timedelta(seconds=settings().merge_grace_s)
    return max(0.0, (deadline - utcnow()).total_seconds())


def _start_attempt(session_id: int, task_id: str | None) -> int:
    now = utcnow()
    with engine().begin() as conn:
        conn.execute(
            update(recordings)
            .where(recordings.c.session_id == session_id)
            .values(
                status="merging",
                attempts=recordings.c.attempts + 1,
                started_at=now,
                progress=0.0,
                task_id=task_id,
                updated_at=now,
            )
        )
        conn.execute(update(sessions).where(sessions.c.id == session_id).values(state="merging"))
        return conn.execute(
            select(recordings.c.attempts).where(recordings.c.session_id == session_id)
        ).scalar_one()


def _progress_writer(session_id: int, on_progress) -> Callable[[float], None]:
    last = [0.0]

    def write(fraction: float) -> None:
        if on_progress:
            on_progress(fraction)
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        with engine().begin() as conn:
            conn.execute(
                update(recordings)
                .where(recordings.c.session_id == session_id)
                .values(progress=round(fraction, 3), updated_at=utcnow())
            )

    return write


def _report_for_api(report: media.MergeReport) -> dict:
    """The merge report as the API shows it: server paths relative to the data directory, so a
    student reading their own session learns nothing of the server's file system."""
    details = report.as_dict()
    details["output"] = str(report.output.relative_to(settings().data_dir))
    details["skipped"] = [{k: v for k, v in item.items() if k != "path"} for item in report.skipped]
    return details


def _record_success(session_id: int, report: media.MergeReport, gaps, missing_files) -> str:
    skipped = [s["seq"] for s in report.skipped]
    status = "partial" if (gaps or skipped or missing_files) else "merged"
    details = _report_for_api(report)
    details["missing_files"] = missing_files
    with engine().begin() as conn:
        conn.execute(
            update(recordings)
            .where(recordings.c.session_id == session_id)
            .values(
                status=status,
                path=str(report.output.relative_to(settings().data_dir)),
                size=report.size,
                duration=report.duration,
                sha256=report.sha256,
                gaps=gaps,
                report=details,
                progress=1.0,
                error=None,
                updated_at=utcnow(),
            )
        )
        conn.execute(update(sessions).where(sessions.c.id == session_id).values(state=status))
    log.info("session %s %s: %s", session_id, status, report.output)
    return status


def _delete_merged_segments(session_id: int, inputs, report: media.MergeReport) -> None:
    """Only after the verified recording is recorded: remove the inputs that went into it."""
    used = set(report.segments_used)
    with engine().begin() as conn:
        conn.execute(
            update(segments)
            .where(segments.c.session_id == session_id, segments.c.seq.in_(used))
            .values(deleted_at=utcnow())
        )
    for seg in inputs:
        if seg.seq in used:
            storage.discard(seg.path)


def fail(session_id: int, error: str) -> None:
    """Give up on a merge: the segments stay, the teacher can queue it again."""
    with engine().begin() as conn:
        conn.execute(
            update(recordings)
            .where(recordings.c.session_id == session_id)
            .values(status="failed", error=error[:2000], updated_at=utcnow())
        )
        conn.execute(update(sessions).where(sessions.c.id == session_id).values(state="failed"))
    log.warning("merge of session %s failed: %s", session_id, error)


def reconcile(stale_after_s: float = 60) -> dict:
    """Queue every finished session whose merge is neither queued nor running.

    Recovers from a Redis restart that lost the queue and from a worker that died with its
    merge (its message only returns after the visibility timeout; its lease expires in seconds).
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    with engine().connect() as conn:
        candidates = conn.execute(
            select(sessions.c.id)
            .join(recordings, recordings.c.session_id == sessions.c.id)
            .where(sessions.c.state.in_(MERGEABLE), recordings.c.updated_at < cutoff)
        ).scalars().all()
    requeued = []
    for sid in candidates:
        if jobs.is_queued(sid) or locks.is_held(lease_name(sid)):
            continue
        with engine().begin() as conn:
            conn.execute(update(sessions).where(sessions.c.id == sid).values(state="finished"))
            conn.execute(
                update(recordings)
                .where(recordings.c.session_id == sid)
                .values(status="queued", updated_at=utcnow())
            )
        jobs.enqueue_merge(sid)
        requeued.append(sid)
    if requeued:
        log.warning("reconcile re-queued the merges of sessions %s", requeued)
    return {"requeued": requeued}


def attempts(session_id: int) -> int:
    with engine().connect() as conn:
        return conn.execute(
            select(recordings.c.attempts).where(recordings.c.session_id == session_id)
        ).scalar() or 0
