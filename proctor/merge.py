"""The merge job: one session's segments into one verified recording, exactly once.

``merge_session`` is what ``celery_tasks.merge_videos_task`` runs. The FFmpeg work itself is in
``proctor.media``; this module decides when to merge, keeps the database and the files
consistent, and makes repeated or concurrent deliveries harmless:

- a per-session lease (a Redis lock renewed while the merge runs) means two merges of one session
  never run at once, and a merge whose worker died frees the session within seconds;
- a finished state (merged/partial) makes a second delivery a no-op;
- an attempt counter in the database stops a merge that keeps killing its worker (poison loop);
- a transient failure (a full disk, FFmpeg briefly missing) is retried with exponential backoff
  and jitter, up to the same limit; meanwhile the recording is ``queued`` with the error and every
  segment stays;
- a merge whose whole worker died (its lease lapsed, its message held by the broker until the
  visibility timeout) is queued again by ``reconcile``, which a merge worker runs when it starts.

The retry policy (attempt limit, backoff, poison limit) is all here; the Celery task applies it.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy import select, update

from . import jobs, locks, media, segment_probes, segments, states, storage
from .clock import utcnow
from .config import settings
from .db import engine
from .schema import recordings, sessions
from .schema import segments as segments_t
from .worker import MERGE_LEASE_PREFIX

log = logging.getLogger(__name__)

LEASE_TTL_S = locks.LEASE_TTL_S
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
    return f"{MERGE_LEASE_PREFIX}{session_id}"


def merge_session(
    session_id: int, on_progress: Callable[[float], None] | None = None, task_id: str | None = None
) -> Outcome:
    """Merge a finished session's segments. Raises Transient for the caller to retry.

    ``task_id`` (the Celery task's) is recorded so the API can point at the task Flower shows.
    """
    lease = locks.Lease(lease_name(session_id), LEASE_TTL_S)
    if not lease.acquire():
        # The holder (a running merge, or reconcile deciding) sees to the session; our marker
        # must not make reconcile believe this message is still waiting in the queue.
        if task_id:
            jobs.clear_queued(session_id, task_id)
        return Outcome(session_id, "skipped", "another merge of this session is running")
    try:
        jobs.clear_queued(session_id)
        return _merge_locked(session_id, on_progress, task_id)
    except Transient as err:
        _await_retry(session_id, err, task_id)
        raise
    finally:
        lease.release()


def _await_retry(session_id: int, err: Transient, task_id: str | None) -> None:
    """Before the lease goes: the recording says why it waits, and is marked queued (the task's
    retry keeps its id) so reconcile does not queue a second attempt beside the retry."""
    with engine().begin() as conn:
        states.retry_later(conn, session_id, str(err))
    jobs.mark_queued(session_id, task_id or "retry")


def _merge_locked(session_id: int, on_progress, task_id: str | None) -> Outcome:
    session = _session(session_id)
    if session is None:
        return Outcome(session_id, "skipped", "session does not exist")
    if session.state in states.DONE:
        return Outcome(session_id, "skipped", f"already {session.state}")
    if session.state not in states.MERGEABLE:
        return Outcome(session_id, "skipped", f"session is {session.state}")
    runs = segments.seat_runs_of(session_id)
    gaps = _gaps(session_id, session.last_seq, runs)
    wait = _grace_left(session, gaps)
    if wait > 0:
        next_task = jobs.enqueue_merge(session_id, countdown=min(wait, 30))
        with engine().begin() as conn:
            states.wait(conn, session_id, gaps, utcnow() + timedelta(seconds=wait), next_task)
        return Outcome(session_id, states.WAITING, f"missing seqs {gaps[:20]}; grace {wait:.0f}s left")
    attempts = _start_attempt(session_id, task_id)
    if attempts > settings().merge_max_attempts:
        fail(session_id, f"gave up after {attempts - 1} attempts")
        return Outcome(session_id, states.FAILED, "too many attempts")
    inputs = _inputs(session_id)
    if not inputs:
        fail(session_id, "no segments were uploaded")
        return Outcome(session_id, states.FAILED, "no segments")
    return _run_merge(session_id, inputs, gaps, runs, on_progress)


@dataclass(frozen=True)
class _Input:
    """One file of the merge: a segment (its run and seq) or the recording of an earlier merge."""

    run: int | None
    seq: int | None
    segment: media.Segment
    sha256: str | None = None  # of a segment: the key of its kept description

    @property
    def label(self) -> int | str:
        return "earlier recording" if self.run is None else segments.label(self.run, self.seq)


def _order_key(run: int, seq: int) -> int:
    # The engine orders by one integer: runs in login order, seqs within a run.
    return run * (segments.MAX_SEQ + 1) + seq


def _inputs(session_id: int) -> list[_Input]:
    """The segments not yet in a recording, in capture order, after the earlier recording when an
    earlier merge consumed segments (the seat logged in again, or a segment came late)."""
    with engine().connect() as conn:
        rows = conn.execute(
            select(segments_t).where(segments_t.c.session_id == session_id, segments_t.c.deleted_at.is_(None))
            .order_by(segments_t.c.run, segments_t.c.seq)
        ).all()
        consumed = conn.execute(
            select(segments_t.c.id).where(segments_t.c.session_id == session_id, segments_t.c.deleted_at.is_not(None))
            .limit(1)
        ).first()
        earlier = conn.execute(select(recordings.c.path).where(recordings.c.session_id == session_id)).scalar()
    inputs = []
    if consumed is not None and earlier:
        inputs.append(_Input(None, None, media.Segment(seq=-1, path=settings().data_dir / earlier)))
    described = segment_probes.known([r.sha256 for r in rows])  # probed as they arrived
    for r in rows:
        path = storage.segment_path(session_id, r.run, r.seq, r.media_type)
        inputs.append(_Input(r.run, r.seq, media.Segment(seq=_order_key(r.run, r.seq), path=path,
                                                       captured_at=r.captured_at,
                                                       probe=described.get(r.sha256)), r.sha256))
    return inputs


def _run_merge(session_id: int, inputs: list[_Input], gaps: list, runs: list, on_progress) -> Outcome:
    missing_files = [i.label for i in inputs if not i.segment.path.is_file()]
    inputs = [i for i in inputs if i.segment.path.is_file()]
    if not inputs:
        fail(session_id, f"segment files are missing on disk: {missing_files[:20]}")
        return Outcome(session_id, states.FAILED, "segment files missing")
    output = storage.recording_base(session_id).with_suffix(".mp4")
    _remove_leftovers_of_dead_merges(output)
    try:
        report = media.merge_segments(
            [i.segment for i in inputs],
            output,
            ffmpeg=settings().ffmpeg,
            ffprobe=settings().ffprobe,
            progress=_progress_writer(session_id, on_progress),
        )
    except media.MediaTimeout as err:
        raise Transient(str(err)) from err
    except media.MediaError as err:
        fail(session_id, str(err))
        return Outcome(session_id, states.FAILED, str(err))
    except OSError as err:
        raise Transient(f"{type(err).__name__}: {err}") from err
    by_key = {i.segment.seq: i for i in inputs}
    status = _record_success(session_id, report, by_key, gaps, missing_files, runs)
    _delete_merged_segments(session_id, [by_key[k] for k in report.segments_used])
    if inputs[0].run is None and inputs[0].segment.path != report.output:
        storage.discard(inputs[0].segment.path)  # the earlier recording, in another container
    _merge_again_if_more_came(session_id, inputs)
    return Outcome(session_id, status, f"{len(report.segments_used)} segments, {report.duration:.1f}s")


def _merge_again_if_more_came(session_id: int, inputs: list[_Input]) -> None:
    """A segment stored while this merge ran is not in the recording: merge once more."""
    merged_ids = {(i.run, i.seq) for i in inputs}
    with engine().connect() as conn:
        rows = conn.execute(
            select(segments_t.c.run, segments_t.c.seq)
            .where(segments_t.c.session_id == session_id, segments_t.c.deleted_at.is_(None))
        ).all()
    newer = [segments.label(r.run, r.seq) for r in rows if (r.run, r.seq) not in merged_ids]
    if not newer:
        return
    with engine().begin() as conn:
        again = states.merge_again(conn, session_id, f"segments {newer[:10]} arrived during the merge")
    if again:
        jobs.enqueue_merge(session_id)


def _remove_leftovers_of_dead_merges(output) -> None:
    """A merge killed mid-way leaves its scratch files; the lease says none of ours is running."""
    storage.make_dirs(output.parent)
    for leftover in output.parent.glob(f"{storage.TMP_PREFIX}{output.stem}-*"):
        storage.discard(leftover)


def _session(session_id: int):
    with engine().connect() as conn:
        return conn.execute(select(sessions).where(sessions.c.id == session_id)).first()


def _gaps(session_id: int, last_seq: int | None, runs: list) -> list:
    """Seqs missing inside each run (segments an earlier merge consumed count as present).

    A token-API session counts from 0 up to its ``last_seq``; a seat run from 0 or 1 (whichever
    it used) up to the highest seq it sent.
    """
    by_run = segments.seqs_by_run(session_id)
    seat = bool(runs)
    if not seat and last_seq is not None:
        by_run.setdefault(0, set())
    gaps: list = []
    for run, seqs in sorted(by_run.items()):
        last = max(seqs, default=-1)
        if not seat and run == 0 and last_seq is not None:
            last = max(last, last_seq)
        first = segments.first_expected(seqs, from_one=seat)
        gaps += [segments.label(run, s) for s in range(first, last + 1) if s not in seqs]
    return gaps


def _grace_left(session, gaps: list[int]) -> float:
    if not gaps or session.finished_at is None:
        return 0.0
    deadline = session.finished_at + timedelta(seconds=settings().merge_grace_s)
    return max(0.0, (deadline - utcnow()).total_seconds())


def _start_attempt(session_id: int, task_id: str | None) -> int:
    with engine().begin() as conn:
        return states.start_attempt(conn, session_id, task_id)


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
            states.record_progress(conn, session_id, fraction)

    return write


def _report_for_api(report: media.MergeReport) -> dict:
    """The merge report as the API shows it: server paths relative to the data directory, so a
    student reading their own session learns nothing of the server's file system."""
    details = report.as_dict()
    details["output"] = str(report.output.relative_to(settings().data_dir))
    details["skipped"] = [{k: v for k, v in item.items() if k != "path"} for item in report.skipped]
    return details


def _record_success(session_id: int, report: media.MergeReport, by_key: dict, gaps, missing_files,
                    runs: list) -> str:
    used = [by_key[k] for k in report.segments_used]
    skipped = [s["seq"] for s in report.skipped]
    details = _report_for_api(report)
    details["segments_used"] = [i.label for i in used]
    details["skipped"] = [{**item, "seq": by_key[item["seq"]].label} for item in details["skipped"]]
    details["missing_files"] = missing_files
    if runs:
        details["runs"] = _run_markers(runs, used)
    recording = {
        "path": str(report.output.relative_to(settings().data_dir)),
        "size": report.size,
        "duration": report.duration,
        "sha256": report.sha256,
        "gaps": gaps,
        "report": details,
    }
    with engine().begin() as conn:
        status = states.merged(conn, session_id, complete=not (gaps or skipped or missing_files), recording=recording)
    log.info("session %s %s: %s", session_id, status, report.output)
    return status


def _run_markers(runs: list, used: list[_Input]) -> list[dict]:
    """Where each run (a login of the seat: a restart) begins in the merged recording."""
    markers = []
    for run in runs:
        index = next((n for n, i in enumerate(used) if i.run == run.run), None)
        markers.append({"run": run.run, "logged_in_at": run.started_at.isoformat(), "starts_at_segment": index})
    return markers


def _delete_merged_segments(session_id: int, used: list[_Input]) -> None:
    """Only after the verified recording is recorded: remove the segments that went into it."""
    merged = [i for i in used if i.run is not None]
    now = utcnow()
    with engine().begin() as conn:
        for run in {i.run for i in merged}:
            conn.execute(
                update(segments_t)
                .where(segments_t.c.session_id == session_id, segments_t.c.run == run,
                       segments_t.c.seq.in_([i.seq for i in merged if i.run == run]))
                .values(deleted_at=now)
            )
    storage.discard_all([item.segment.path for item in merged])
    segment_probes.forget([item.sha256 for item in merged])


def fail(session_id: int, error: str) -> None:
    """Give up on a merge: the segments stay, the teacher can queue it again."""
    with engine().begin() as conn:
        states.fail(conn, session_id, error)
    log.warning("merge of session %s failed: %s", session_id, error)


def retry_delay(session_id: int, err: Exception) -> float | None:
    """After a transient failure: seconds until the next attempt, or None when the attempts are
    spent (the merge is then failed here, its segments kept).

    Exponential backoff with jitter so retries of many sessions do not arrive together.
    """
    made = attempts(session_id)
    if made >= settings().merge_max_attempts:
        fail(session_id, f"{err} (after {made} attempts)")
        jobs.clear_queued(session_id)  # no retry follows
        return None
    base = settings().merge_retry_base_s
    return (2**made) * base + random.uniform(0, base)


def reconcile(stale_after_s: float = 60) -> dict:
    """Queue every finished session whose merge is neither queued nor running.

    Recovers from a worker that died with its merge: the session is still ``merging`` but nobody
    holds its lease (it lapses LEASE_TTL_S after its holder died, while the broker keeps the
    message until the visibility timeout). Also from a Redis restart that lost the queue: a
    ``finished`` session unchanged for ``stale_after_s`` without a queued marker (a finish that
    just committed sets its marker a moment later).
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    with engine().connect() as conn:
        candidates = conn.execute(
            select(sessions.c.id)
            .join(recordings, recordings.c.session_id == sessions.c.id)
            .where((sessions.c.state == states.MERGING)
                   | ((sessions.c.state == states.FINISHED) & (recordings.c.updated_at < cutoff)))
        ).scalars().all()
    requeued = [sid for sid in candidates if _requeue_if_abandoned(sid)]
    if requeued:
        log.warning("reconcile re-queued the merges of sessions %s", requeued)
    return {"requeued": requeued}


def _requeue_if_abandoned(session_id: int) -> bool:
    """Queue the merge again unless one runs or is queued. Decided while holding the session's
    lease, so no merge can start or finish between the look and the re-queue."""
    if jobs.is_queued(session_id):
        return False
    with locks.held(lease_name(session_id), LEASE_TTL_S) as taken:
        if not taken or jobs.is_queued(session_id):
            return False
        session = _session(session_id)
        if session is None or session.state not in states.MERGEABLE:
            return False
        with engine().begin() as conn:
            states.requeue(conn, session_id, fresh_attempts=False)
    # Only now: a worker taking the message at once must find the lease free.
    jobs.enqueue_merge(session_id)
    return True


def attempts(session_id: int) -> int:
    with engine().connect() as conn:
        return conn.execute(
            select(recordings.c.attempts).where(recordings.c.session_id == session_id)
        ).scalar() or 0
