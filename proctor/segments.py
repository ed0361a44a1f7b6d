"""A session's segments: storing an upload exactly once, and what has arrived so far.

An upload is streamed to a temporary file (``storage``) and only then linked under its run and seq
and recorded; the same bytes again are not an error, different bytes for a stored seq are refused.
A token-API session has one run (0); a desktop seat starts a run at each login, because it counts
from 1 again after a restart. A segment is never refused for arriving late: one that comes after
the session was merged is stored and the session is merged again.

A seq is at most ``MAX_AHEAD`` above the number of segments its run has stored, so a run never
misses more than ``MAX_AHEAD`` seqs: one upload at seq 999999 cannot make every answer about the
session (its missing seqs, the merge's gaps) a million entries long. Missing seqs are reported as
``[from, to]`` ranges. An upload's first bytes must fit its type (``filetypes.segment_matches``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import BinaryIO

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from . import filetypes, jobs, locks, states, storage
from .clock import utcnow
from .db import engine
from .errors import BadRequest, Conflict, NotFound, UnsupportedMediaType
from .schema import seat_runs, segments, sessions

MAX_SEQ = 999_999
MAX_AHEAD = 1000


@dataclass(frozen=True)
class Upload:
    seq: int
    media_type: str
    length: int
    sha256: str | None = None
    captured_at: datetime | None = None
    run: int = 0


def store_segment(session_id: int, upload: Upload, body: BinaryIO) -> tuple[bool, dict]:
    """Store one segment; returns (created, segment info). Same bytes again is not an error."""
    state = _session_state(session_id)
    check_seq_ahead(session_id, upload.run, upload.seq)
    final = storage.segment_path(session_id, upload.run, upload.seq, upload.media_type)
    staged = storage.stage_stream(body, final.parent, upload.length)
    try:
        if not filetypes.segment_matches(filetypes.read_head(staged.path), upload.media_type):
            raise UnsupportedMediaType(f"the body is not {upload.media_type}; nothing stored", code="content_mismatch")
        if upload.sha256 and staged.sha256 != upload.sha256:
            raise _bad_checksum(upload.sha256, staged.sha256)
        existing = _segment_row(session_id, upload.run, upload.seq)
        if existing is not None:
            return False, _same_or_conflict(existing, staged.sha256)
        stored = _publish_segment(session_id, upload, staged, final)
    finally:
        storage.discard(staged.path)
    created, _ = stored
    if created:  # a concurrent upload of the same bytes that lost the race has nothing new to probe
        jobs.enqueue_probe(session_id, upload.run, upload.seq)
    if state in states.MERGED_ALREADY:  # the common upload, to an open session, writes nothing more
        _merge_again(session_id, upload)
    return stored


def check_seq_ahead(session_id: int, run: int, seq: int) -> None:
    """A seq (of an upload, or a finish's ``last_seq``) at most MAX_AHEAD above what the run stored."""
    if seq <= MAX_AHEAD:  # true whatever is stored: the count is read only for the rare far seq
        return
    with engine().connect() as conn:
        stored = conn.execute(
            select(func.count()).select_from(segments)
            .where(segments.c.session_id == session_id, segments.c.run == run)
        ).scalar_one()
    if seq > stored + MAX_AHEAD:
        raise BadRequest(
            f"seq {seq} is too far ahead: {stored} segments are stored, so a seq may be at most "
            f"{stored + MAX_AHEAD}; send the earlier ones first", code="seq_too_far_ahead")


def _bad_checksum(claimed: str, actual: str) -> BadRequest:
    return BadRequest(
        f"X-Content-SHA256 {claimed} does not match the body's SHA-256 {actual}; nothing stored",
        code="checksum_mismatch",
    )


def _session_state(session_id: int) -> str:
    with engine().connect() as conn:
        state = conn.execute(select(sessions.c.state).where(sessions.c.id == session_id)).scalar()
    if state is None:
        raise NotFound(f"session {session_id} does not exist")
    return state


def _merge_again(session_id: int, upload: Upload) -> None:
    """A segment the last merge did not have: merge the session again. (A merge still to come
    finds it itself; one running now sees it when it ends.)"""
    note = f"segment {label(upload.run, upload.seq)} arrived after the merge"
    with engine().begin() as conn:
        again = states.merge_again(conn, session_id, note)
    if again:
        jobs.enqueue_merge(session_id)


def label(run: int, seq: int) -> int | str:
    """How reports name a segment: its seq, with its run when it is not the first."""
    return seq if run == 0 else f"{run}:{seq}"


def _publish_segment(session_id, upload: Upload, staged: storage.StagedFile, final) -> tuple[bool, dict]:
    """Put the file in place, then record it, as the only upload of this seq doing so.

    Without the lock, a second upload of the same seq could take the first one's fresh file for
    the leftover of a crash (a file without a row) and replace it under the first one's row.
    """
    with locks.held(f"segment:{session_id}:{upload.run}:{upload.seq}", 60) as taken:
        if not taken:
            raise Conflict(f"seq {upload.seq} is being stored by another upload; retry", code="upload_in_progress")
        existing = _segment_row(session_id, upload.run, upload.seq)
        if existing is not None:
            return False, _same_or_conflict(existing, staged.sha256)
        if not storage.publish(staged, final):
            storage.replace(staged, final)  # no row: what a crash between link and insert left
        values = {
            "session_id": session_id,
            "run": upload.run,
            "seq": upload.seq,
            "captured_at": upload.captured_at,
            "size": staged.size,
            "sha256": staged.sha256,
            "media_type": upload.media_type,
            "received_at": utcnow(),
        }
        try:
            with engine().begin() as conn:
                conn.execute(insert(segments).values(**values))
        except Exception:
            # Not recorded (the database failed meanwhile): no file may stay as if it were; the
            # client's retry stores it again.
            final.unlink(missing_ok=True)
            raise
    return True, segment_dict(SimpleNamespace(**values))


def _same_or_conflict(existing, sha256: str) -> dict:
    if existing.sha256 != sha256:
        raise Conflict(
            f"seq {existing.seq} is already stored with different content (sha256 {existing.sha256})",
            code="segment_conflict",
        )
    return segment_dict(existing)


def segment_dict(row) -> dict:
    return {
        "seq": row.seq,
        "run": row.run,
        "size": row.size,
        "sha256": row.sha256,
        "media_type": row.media_type,
        "captured_at": row.captured_at.isoformat() if row.captured_at else None,
        "received_at": row.received_at.isoformat(),
    }


def _segment_row(session_id: int, run: int, seq: int):
    with engine().connect() as conn:
        return conn.execute(
            select(segments).where(segments.c.session_id == session_id, segments.c.run == run, segments.c.seq == seq)
        ).first()


def first_expected(seqs, *, from_one: bool) -> int:
    """Where a run's count starts: 0, except for a seat run (``from_one``) that sent no 0.

    The original desktop client counts from 1; a seat counting from 0 sends a 0. Deciding on the
    whole run, not on its first upload, gives no phantom gap when uploads arrive out of order.
    """
    return 1 if from_one and 0 not in seqs else 0


def missing_ranges(seqs: list[int], first: int, last: int) -> list[list[int]]:
    """The seqs from ``first`` to ``last`` that are not in ``seqs``, as [from, to] ranges."""
    ranges: list[list[int]] = []
    expected = first
    for seq in sorted(s for s in set(seqs) if first <= s <= last):
        if seq > expected:
            ranges.append([expected, seq - 1])
        expected = seq + 1
    if expected <= last:
        ranges.append([expected, last])
    return ranges


def next_seq(session_id: int, run: int = 0) -> int:
    """The seq after the highest one the run stored: one look-up at the end of the (session, run,
    seq) index, however many segments are stored, and never behind a concurrent upload's commit."""
    with engine().connect() as conn:
        return read_next_seq(conn, session_id, run)


def read_next_seq(conn: Connection, session_id: int, run: int = 0) -> int:
    highest = conn.execute(
        select(func.max(segments.c.seq)).where(segments.c.session_id == session_id, segments.c.run == run)
    ).scalar()
    return 0 if highest is None else highest + 1


def next_and_missing(seqs) -> tuple[int, list[list[int]]]:
    """(next_seq, missing seqs below it as [from, to] ranges) of a run's stored seqs."""
    if not seqs:
        return 0, []
    top = max(seqs)
    return top + 1, missing_ranges(seqs, 0, top)


def seat_runs_of(session_id: int) -> list:
    """The runs of a desktop seat (one per login: run, started_at), in order; none for a
    token-API session."""
    with engine().connect() as conn:
        return read_seat_runs(conn, session_id)


def read_seat_runs(conn: Connection, session_id: int) -> list:
    return conn.execute(
        select(seat_runs.c.run, seat_runs.c.started_at)
        .where(seat_runs.c.session_id == session_id).order_by(seat_runs.c.run)
    ).all()


def seqs_by_run(session_id: int) -> dict[int, set[int]]:
    """Every seq a session ever stored (merged ones too), grouped by run."""
    with engine().connect() as conn:
        return read_seqs_by_run(conn, session_id)


def read_seqs_by_run(conn: Connection, session_id: int) -> dict[int, set[int]]:
    by_run: dict[int, set[int]] = {}
    for r in conn.execute(select(segments.c.run, segments.c.seq).where(segments.c.session_id == session_id)):
        by_run.setdefault(r.run, set()).add(r.seq)
    return by_run


def describe_runs(logged_in: list, by_run: dict[int, set[int]]) -> list[dict]:
    """Each run logged in, with what it sent (``by_run``) and what is missing in it."""
    out = []
    for run in logged_in:
        seqs = by_run.get(run.run, set())
        first = first_expected(seqs, from_one=True)
        out.append({
            "run": run.run,
            "logged_in_at": run.started_at.isoformat(),
            "segments": len(seqs),
            "missing": missing_ranges(sorted(seqs), first, max(seqs, default=first - 1)),
        })
    return out
