"""A student's session: joining, tokens, segment uploads, finishing, and what the API shows of it.

Both front doors (the token API and the legacy seat protocol) call these functions; nothing here
knows about HTTP beyond the status each error carries.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from types import SimpleNamespace
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import jobs, locks, presence, redis_client, storage, students
from .config import settings
from .db import engine, recordings, roster, segments, sessions, utcnow
from .errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from .exams import get_exam_row

MAX_SEQ = 999_999
UPLOADABLE = ("active", "finished")
TOKEN_CACHE_TTL_S = 24 * 3600


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_key(token_hash: str) -> str:
    return redis_client.key("token", token_hash)


def forget_cached_tokens(token_hashes: list[str]) -> None:
    """Drop tokens from the cache so sessions deleted from the database stop authenticating."""
    if token_hashes:
        redis_client.client().delete(*[_token_key(h) for h in token_hashes])


# --- joining and tokens ---------------------------------------------------------------------


def join(exam_id: int, student_id: str, client_addr: str | None = None, *, via: str = "token") -> dict:
    """Create the student's session, or resume it with a fresh token (the old one is revoked).

    Every join is written to the login history (``via`` names the front door).
    """
    token = secrets.token_urlsafe(32)
    token_hash = hash_token(token)
    with engine().begin() as conn:
        exam = get_exam_row(conn, exam_id)
        if exam.status == "completed":
            raise Conflict(f"exam {exam_id} is completed", code="exam_completed")
        if exam.roster_restricted and not conn.execute(
            select(roster.c.id).where(roster.c.exam_id == exam_id, roster.c.student_id == student_id)
        ).first():
            raise Forbidden(f"student {student_id} is not on the roster of exam {exam_id}", code="not_on_roster")
    sid, old_hash, previous_addr = _create_or_resume(exam_id, student_id, token_hash, client_addr)
    r = redis_client.client()
    if old_hash:
        r.delete(_token_key(old_hash))
    r.set(_token_key(token_hash), sid, ex=TOKEN_CACHE_TTL_S)
    last_seen = presence.last_seen([sid]).get(sid) if old_hash else None  # before track() resets it
    presence.track(sid)
    students.record_login(
        exam_id, sid, student_id, resumed=old_hash is not None, via=via,
        client_addr=client_addr, previous_addr=previous_addr, last_seen=last_seen,
    )
    return {
        "session_id": sid,
        "token": token,
        "heartbeat_interval_s": settings().heartbeat_interval_s,
        "max_segment_bytes": settings().max_segment_bytes,
        "next_seq": seq_summary(sid)[0],
    }


def _create_or_resume(exam_id: int, student_id: str, token_hash: str, client_addr: str | None):
    now = utcnow()
    try:
        with engine().begin() as conn:
            sid = conn.execute(
                insert(sessions).values(
                    exam_id=exam_id,
                    student_id=student_id,
                    token_hash=token_hash,
                    state="active",
                    presence="online",
                    joined_at=now,
                    client_addr=client_addr,
                )
            ).inserted_primary_key[0]
            presence.insert_event(conn, sid, "online", now)
            return sid, None, None
    except IntegrityError:
        pass  # already joined: resume below
    with engine().begin() as conn:
        row = conn.execute(
            select(sessions.c.id, sessions.c.state, sessions.c.token_hash, sessions.c.client_addr).where(
                sessions.c.exam_id == exam_id, sessions.c.student_id == student_id
            )
        ).one()
        if row.state != "active":
            raise Conflict(f"session {row.id} is already {row.state}", code="session_finished")
        conn.execute(
            update(sessions)
            .where(sessions.c.id == row.id)
            .values(token_hash=token_hash, client_addr=client_addr)
        )
    presence.record_change([row.id], "online")
    return row.id, row.token_hash, row.client_addr


def session_for_token(token: str) -> int:
    token_hash = hash_token(token)
    r = redis_client.client()
    cached = r.get(_token_key(token_hash))
    if cached:
        return int(cached)
    with engine().connect() as conn:
        sid = conn.execute(select(sessions.c.id).where(sessions.c.token_hash == token_hash)).scalar()
    if sid is None:
        raise Unauthorized("invalid or revoked session token")
    r.set(_token_key(token_hash), sid, ex=TOKEN_CACHE_TTL_S)
    return sid


# --- segments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    seq: int
    media_type: str
    length: int
    sha256: str | None = None
    captured_at: datetime | None = None


def store_segment(session_id: int, upload: Upload, body: BinaryIO) -> tuple[bool, dict]:
    """Store one segment; returns (created, segment info). Same bytes again is not an error."""
    row = _session_row(session_id)
    existing = _segment_row(session_id, upload.seq)
    if existing is None:
        _check_accepts_uploads(row, upload.seq)
    final = storage.segment_path(session_id, upload.seq, upload.media_type)
    staged = storage.stage_stream(body, final.parent, upload.length)
    try:
        if upload.sha256 and staged.sha256 != upload.sha256:
            raise _bad_checksum(upload.sha256, staged.sha256)
        if existing is not None:
            return False, _same_or_conflict(existing, staged.sha256)
        return _publish_segment(session_id, upload, staged, final)
    finally:
        storage.discard(staged.path)


def _bad_checksum(claimed: str, actual: str) -> BadRequest:
    return BadRequest(
        f"X-Content-SHA256 {claimed} does not match the body's SHA-256 {actual}; nothing stored",
        code="checksum_mismatch",
    )


def _check_accepts_uploads(row, seq: int) -> None:
    if row.state not in UPLOADABLE:
        raise Conflict(f"session {row.id} is already {row.state}", code="session_closed")
    if row.state == "finished" and row.last_seq is not None and seq > row.last_seq:
        raise Conflict(
            f"session {row.id} finished at seq {row.last_seq}; seq {seq} is beyond it",
            code="beyond_last_seq",
        )


def _publish_segment(session_id, upload: Upload, staged: storage.StagedFile, final) -> tuple[bool, dict]:
    """Put the file in place, then record it, as the only upload of this seq doing so.

    Without the lock, a second upload of the same seq could take the first one's fresh file for
    the leftover of a crash (a file without a row) and replace it under the first one's row.
    """
    with locks.held(f"segment:{session_id}:{upload.seq}", 60) as taken:
        if not taken:
            raise Conflict(f"seq {upload.seq} is being stored by another upload; retry", code="upload_in_progress")
        existing = _segment_row(session_id, upload.seq)
        if existing is not None:
            return False, _same_or_conflict(existing, staged.sha256)
        if not storage.publish(staged, final):
            storage.replace(staged, final)  # no row: what a crash between link and insert left
        values = {
            "session_id": session_id,
            "seq": upload.seq,
            "captured_at": upload.captured_at,
            "size": staged.size,
            "sha256": staged.sha256,
            "media_type": upload.media_type,
            "received_at": utcnow(),
        }
        with engine().begin() as conn:
            conn.execute(insert(segments).values(**values))
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
        "size": row.size,
        "sha256": row.sha256,
        "media_type": row.media_type,
        "captured_at": row.captured_at.isoformat() if row.captured_at else None,
        "received_at": row.received_at.isoformat(),
    }


def _segment_row(session_id: int, seq: int):
    with engine().connect() as conn:
        return conn.execute(
            select(segments).where(segments.c.session_id == session_id, segments.c.seq == seq)
        ).first()


def seq_summary(session_id: int) -> tuple[int, list[int], int]:
    """(next_seq, missing seqs below it, number stored) of a session."""
    with engine().connect() as conn:
        seqs = conn.execute(
            select(segments.c.seq).where(segments.c.session_id == session_id).order_by(segments.c.seq)
        ).scalars().all()
    if not seqs:
        return 0, [], 0
    present = set(seqs)
    return seqs[-1] + 1, [s for s in range(seqs[-1]) if s not in present], len(seqs)


# --- finishing ------------------------------------------------------------------------------


def finish(session_id: int, last_seq: int | None, *, via: str = "token", client_addr: str | None = None) -> dict:
    """Record the end of a session and queue its merge. Repeating the same finish is harmless.

    The finish that ends the session is written to the login history as a logout.
    """
    row = _session_row(session_id)
    next_seq = seq_summary(session_id)[0]
    if last_seq is None:
        last_seq = next_seq - 1 if next_seq else None
    if row.state != "active":
        if row.state == "finished" and row.last_seq == last_seq:
            return session_view(session_id)
        raise Conflict(f"session {session_id} is already {row.state}", code="session_finished")
    if last_seq is not None and last_seq < next_seq - 1:
        raise Conflict(
            f"last_seq {last_seq} is below seq {next_seq - 1}, which is already stored",
            code="last_seq_too_low",
        )
    if mark_finished(session_id, last_seq):
        students.record_event(row.exam_id, session_id, row.student_id, "logout", via, client_addr)
    return session_view(session_id)


def mark_finished(session_id: int, last_seq: int | None) -> bool:
    """Move an active session to finished and queue its merge; False if it was not active."""
    values = {"state": "finished", "finished_at": utcnow(), "last_seq": last_seq}
    # Tracking stops here, so the last heartbeat must not wait for the next batch flush.
    last_beat = presence.last_seen([session_id]).get(session_id)
    if last_beat is not None:
        values["last_heartbeat_at"] = last_beat
    with engine().begin() as conn:
        changed = conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.state == "active")
            .values(**values)
        ).rowcount
        if changed:
            conn.execute(
                insert(recordings).values(
                    session_id=session_id, status="queued", attempts=0, updated_at=utcnow()
                )
            )
    if changed:
        presence.forget(session_id)
        jobs.enqueue_merge(session_id)
    return bool(changed)


# --- reading --------------------------------------------------------------------------------


def _session_row(session_id: int):
    with engine().connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
    if row is None:
        raise NotFound(f"session {session_id} does not exist")
    return row


def recording_dict(row) -> dict | None:
    if row is None:
        return None
    return {
        "status": row.status,
        "size": row.size,
        "duration": row.duration,
        "sha256": row.sha256,
        "attempts": row.attempts,
        "error": row.error,
        "gaps": row.gaps or [],
        "progress": row.progress,
        "task_id": row.task_id,
        "report": row.report,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


def recording_row(session_id: int):
    with engine().connect() as conn:
        return conn.execute(select(recordings).where(recordings.c.session_id == session_id)).first()


def session_view(session_id: int) -> dict:
    row = _session_row(session_id)
    next_seq, missing, count = seq_summary(session_id)
    seen = presence.last_seen([session_id]).get(session_id) or row.last_heartbeat_at
    return {
        "id": row.id,
        "exam_id": row.exam_id,
        "student_id": row.student_id,
        "state": row.state,
        "presence": row.presence,
        "joined_at": row.joined_at.isoformat(),
        "last_heartbeat_at": seen.isoformat() if seen else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "last_seq": row.last_seq,
        "segments": count,
        "next_seq": next_seq,
        "missing": missing,
        "recording": recording_dict(recording_row(session_id)),
    }


def exam_roster(exam_id: int) -> list[dict]:
    """Every session of an exam with its progress, in one pass over the tables."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        rows = conn.execute(
            select(sessions).where(sessions.c.exam_id == exam_id).order_by(sessions.c.student_id)
        ).all()
        counts = dict(
            (sid, (n, top))
            for sid, n, top in conn.execute(
                select(segments.c.session_id, func.count(), func.max(segments.c.seq))
                .join(sessions, sessions.c.id == segments.c.session_id)
                .where(sessions.c.exam_id == exam_id)
                .group_by(segments.c.session_id)
            )
        )
        recs = {
            r.session_id: r
            for r in conn.execute(
                select(recordings)
                .join(sessions, sessions.c.id == recordings.c.session_id)
                .where(sessions.c.exam_id == exam_id)
            )
        }
    seen = presence.last_seen([r.id for r in rows])
    out = []
    for r in rows:
        n, top = counts.get(r.id, (0, None))
        last = seen.get(r.id) or r.last_heartbeat_at
        out.append(
            {
                "id": r.id,
                "student_id": r.student_id,
                "state": r.state,
                "presence": r.presence,
                "last_heartbeat_at": last.isoformat() if last else None,
                "segments": n,
                "next_seq": (top + 1) if top is not None else 0,
                "recording": recording_dict(recs.get(r.id)),
            }
        )
    return out


def requeue_merge(session_id: int) -> None:
    """Teacher's retry of a merge that failed: fresh attempts, queued again."""
    row = _session_row(session_id)
    if row.state not in ("failed", "finished"):
        raise Conflict(f"session {session_id} is {row.state}; only a failed or finished session can be merged again", code="not_mergeable")
    with engine().begin() as conn:
        conn.execute(update(sessions).where(sessions.c.id == session_id).values(state="finished"))
        conn.execute(
            update(recordings)
            .where(recordings.c.session_id == session_id)
            .values(status="queued", attempts=0, error=None, progress=None, updated_at=utcnow())
        )
    jobs.enqueue_merge(session_id)
