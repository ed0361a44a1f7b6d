"""A student's session: joining, finishing, and what the API shows of it.

Both front doors (the token API and the legacy seat protocol) call these functions; nothing here
knows about HTTP beyond the status each error carries. Tokens are in ``tokens``, segments in
``segments``, and every change of state goes through ``states``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from . import filetypes, jobs, logins, presence, states, tokens
from . import segments as segments_of
from .clock import utcnow
from .config import settings
from .db import engine
from .errors import Conflict, Forbidden, Gone, NotFound
from .exams import get_exam_row
from .schema import recordings, roster, segments, sessions

# --- joining ---------------------------------------------------------------------------------


def join(exam_id: int, student_id: str, client_addr: str | None = None, *, via: str = "token",
         reopen: bool = False, takeover: bool = False) -> dict:
    """Create the student's session, or resume it with a fresh token (the old one is revoked).

    A session belongs to the front door (``via``) that created it: the other door is refused (and
    the refusal shown in the login history) until the teacher releases it. A token-API join is
    refused too while the session is online, so nobody takes over a student who is taking the
    exam. ``takeover`` (the teacher's join) lifts both rules and moves the session to ``via``.
    ``reopen``: a session that already finished is opened again (a desktop seat logging in again
    after a logout by mistake); otherwise joining it is refused. Every join is written to the
    login history.
    """
    token, token_hash = tokens.new_token()
    with engine().begin() as conn:
        exam = get_exam_row(conn, exam_id)
        if exam.status == states.COMPLETED:
            raise Conflict(f"exam {exam_id} is completed", code="exam_completed")
        if exam.roster_restricted and not conn.execute(
            select(roster.c.id).where(roster.c.exam_id == exam_id, roster.c.student_id == student_id)
        ).first():
            raise Forbidden(f"student {student_id} is not on the roster of exam {exam_id}", code="not_on_roster")
    door = Door(via, client_addr, reopen=reopen, takeover=takeover)
    sid, old_hash, previous_addr = _create_or_resume(exam_id, student_id, token_hash, door)
    tokens.remember(token_hash, sid, replaces=old_hash)
    last_seen = presence.last_seen([sid]).get(sid) if old_hash else None  # before track() resets it
    presence.track(sid)
    logins.record_login(
        exam_id, sid, student_id, resumed=old_hash is not None, via=via,
        client_addr=client_addr, previous_addr=previous_addr, last_seen=last_seen,
    )
    return {
        "session_id": sid,
        "token": token,
        "heartbeat_interval_s": settings().heartbeat_interval_s,
        "max_segment_bytes": settings().max_segment_bytes,
        "segment_s": settings().segment_s,
        "ends_at": exam.ends_at.isoformat(),
        "next_seq": segments_of.next_seq(sid),
    }


@dataclass(frozen=True)
class Door:
    """Who is joining: the front door, from where, and what they may do to an existing session."""

    via: str
    client_addr: str | None
    reopen: bool = False
    takeover: bool = False


def _create_or_resume(exam_id: int, student_id: str, token_hash: str, door: Door):
    now = utcnow()
    try:
        with engine().begin() as conn:
            sid = conn.execute(
                insert(sessions).values(
                    exam_id=exam_id,
                    student_id=student_id,
                    token_hash=token_hash,
                    state=states.ACTIVE,
                    presence="online",
                    joined_at=now,
                    client_addr=door.client_addr,
                    door=door.via,
                )
            ).inserted_primary_key[0]
            presence.insert_event(conn, sid, "online", now)
            return sid, None, None
    except IntegrityError:
        pass  # already joined: resume below
    with engine().begin() as conn:
        row = conn.execute(
            select(sessions.c.id, sessions.c.state, sessions.c.token_hash, sessions.c.client_addr, sessions.c.door)
            .where(sessions.c.exam_id == exam_id, sessions.c.student_id == student_id)
        ).one()
        refusal = None if door.takeover else _refusal(row, door)
        if refusal is None:
            if row.state not in states.OPEN and not (door.reopen and states.reopen(conn, row.id)):
                raise Conflict(f"session {row.id} is already {row.state}", code="session_finished")
            conn.execute(
                update(sessions)
                .where(sessions.c.id == row.id)
                .values(token_hash=token_hash, client_addr=door.client_addr, door=door.via)
            )
    if refusal is not None:  # written after the read transaction: SQLite allows one writer
        logins.record_refusal(exam_id, row.id, student_id, door.via, door.client_addr, refusal.message)
        raise refusal
    presence.record_change([row.id], "online")
    return row.id, row.token_hash, row.client_addr


def _refusal(row, door: Door) -> Conflict | None:
    """Why this join may not take the existing session, if it may not."""
    if row.door not in (None, door.via):
        on_seat = row.door == "legacy"
        where = "at a desktop seat" if on_seat else "in a browser"
        return Conflict(f"this student is taking the exam {where} (session {row.id}): the teacher can release it",
                        code="session_on_seat" if on_seat else "session_in_browser")
    if door.via == "token" and row.state in states.OPEN:
        silent_for = _silent_for(row.id)
        wait = settings().offline_after_s - silent_for
        if wait > 0:
            return Conflict(f"session {row.id} is in use by a client that is online", code="session_in_use",
                            retry_after=int(wait) + 1)
    return None


def _silent_for(session_id: int) -> float:
    """Seconds since the session's last heartbeat (infinite when it has none)."""
    last = presence.last_seen([session_id]).get(session_id)
    return (utcnow() - last).total_seconds() if last else float("inf")


def release(session_id: int) -> dict:
    """The teacher lets either front door take the session at its next join or login."""
    with engine().begin() as conn:
        if not conn.execute(update(sessions).where(sessions.c.id == session_id).values(door=None)).rowcount:
            raise NotFound(f"session {session_id} does not exist")
    return session_view(session_id)


# --- finishing ------------------------------------------------------------------------------


def finish(session_id: int, last_seq: int | None, *, via: str = "token", client_addr: str | None = None) -> dict:
    """Record the end of a session and queue its merge. Repeating the same finish is harmless.

    The finish that ends the session is written to the login history as a logout.
    """
    with engine().connect() as conn:
        row = _session(conn, session_id)
        next_seq = segments_of.read_next_seq(conn, session_id)
    if last_seq is None:
        last_seq = next_seq - 1 if next_seq else None
    if row.state not in states.OPEN:
        if row.state == states.FINISHED and row.last_seq == last_seq:
            return session_view(session_id)
        raise Conflict(f"session {session_id} is already {row.state}", code="session_finished")
    if last_seq is not None and last_seq < next_seq - 1:
        raise Conflict(
            f"last_seq {last_seq} is below seq {next_seq - 1}, which is already stored",
            code="last_seq_too_low",
        )

    def write_logout(conn: Connection) -> None:
        logins.write_event(conn, row.exam_id, session_id, row.student_id, "logout", via, client_addr)

    mark_finished(session_id, last_seq, also=write_logout)
    return session_view(session_id)


def mark_finished(session_id: int, last_seq: int | None, also: Callable[[Connection], None] | None = None) -> bool:
    """Move an open session to finished, offline, and queue its merge; False if it was not open.
    ``also`` writes more in the same transaction when the session finishes (its logout): one
    transaction per finish, for the hundreds that come at an exam's end."""
    extra = {}
    # Tracking stops here, so the last heartbeat must not wait for the next batch flush.
    last_beat = presence.last_seen([session_id]).get(session_id)
    if last_beat is not None:
        extra["last_heartbeat_at"] = last_beat
    with engine().begin() as conn:
        changed = states.finish(conn, session_id, last_seq, extra)
        if changed:
            presence.write_change(conn, [session_id], "offline", utcnow())  # no longer online
            if also is not None:
                also(conn)
    if changed:
        presence.forget(session_id)
        jobs.enqueue_merge(session_id)
    return changed


# --- reading --------------------------------------------------------------------------------


def session_row(session_id: int):
    with engine().connect() as conn:
        return _session(conn, session_id)


def _session(conn: Connection, session_id: int):
    row = conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
    if row is None:
        raise NotFound(f"session {session_id} does not exist")
    return row


def session_id_of(exam_id: int, student_id: str) -> int:
    """The id of the student's session in the exam (NotFound when they have not joined it)."""
    with engine().connect() as conn:
        sid = conn.execute(select(sessions.c.id).where(sessions.c.exam_id == exam_id,
                                                       sessions.c.student_id == student_id)).scalar()
    if sid is None:
        raise NotFound(f"student {student_id} has no session in exam {exam_id}")
    return sid


def recording_dict(row) -> dict | None:
    if row is None:
        return None
    view = {
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
        "merges": row.merges,
        "note": row.note,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }
    if row.status == states.WAITING and row.report:
        merge_at = datetime.fromisoformat(row.report["merge_at"])
        view["missing"] = row.report["missing"]
        view["merge_at"] = row.report["merge_at"]
        view["seconds_left"] = max(0, round((merge_at - utcnow()).total_seconds()))
    return view


def recording_row(session_id: int):
    with engine().connect() as conn:
        return conn.execute(select(recordings).where(recordings.c.session_id == session_id)).first()


def recording_file(session_id: int) -> tuple[Path, str, str]:
    """The merged recording to play back: its file, its media type (what its first bytes say,
    never what a name or a client claims) and its sha256 (an ETag)."""
    row = recording_row(session_id)
    if row is not None and row.status in states.GONE:
        raise Gone(f"the recording of session {session_id} was {row.status}", code=f"recording_{row.status}")
    if row is None or row.status not in states.PLAYABLE or not row.path:
        raise NotFound(f"session {session_id} has no merged recording yet")
    path = settings().data_dir / row.path
    media_type = filetypes.sniff_file(path) if path.is_file() else None
    if media_type is None:
        raise Conflict(f"the recording of session {session_id} is no longer on disk", code="recording_gone")
    if media_type not in filetypes.VIDEO_TYPES:
        raise Conflict(f"the recording of session {session_id} is not a video", code="recording_unplayable")
    return path, media_type, row.sha256


def _session_and_recording(conn: Connection, session_id: int):
    """The session's row and its recording's (or None), read by one statement so both are of one
    moment: a merge changes both in one transaction, and two reads (on SQLite, each sees the latest
    commit) fell either side of it now and then (a queued recording of a session still merging)."""
    found = conn.execute(
        select(sessions, recordings)
        .outerjoin(recordings, recordings.c.session_id == sessions.c.id)
        .where(sessions.c.id == session_id)
    ).first()
    if found is None:
        raise NotFound(f"session {session_id} does not exist")
    fields = found._mapping
    session = SimpleNamespace(**{c.name: fields[c] for c in sessions.c})
    if fields[recordings.c.session_id] is None:
        return session, None
    return session, SimpleNamespace(**{c.name: fields[c] for c in recordings.c})


def session_view(session_id: int) -> dict:
    """The session as the API shows it; ``next_seq`` and ``missing`` are of the first run (a
    token-API session has no other), ``runs`` lists a desktop seat's runs (one per login),
    ``exam_ends_at`` the exam's end now (extensions included). Read on one pooled connection:
    the finish calls of a hall's end each build it, and every checkout is a ping and a rollback."""
    with engine().connect() as conn:
        row, recording = _session_and_recording(conn, session_id)
        exam = get_exam_row(conn, row.exam_id)
        by_run = segments_of.read_seqs_by_run(conn, session_id)
        logged_in = segments_of.read_seat_runs(conn, session_id)
    next_seq, missing = segments_of.next_and_missing(by_run.get(0, ()))
    seen = presence.last_seen([session_id]).get(session_id) or row.last_heartbeat_at
    view = {
        "id": row.id,
        "exam_id": row.exam_id,
        "student_id": row.student_id,
        "state": row.state,
        "presence": row.presence,
        "joined_at": row.joined_at.isoformat(),
        "last_heartbeat_at": seen.isoformat() if seen else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "last_seq": row.last_seq,
        "segments": sum(len(seqs) for seqs in by_run.values()),
        "next_seq": next_seq,
        "missing": missing,
        "closes_at": row.closes_at.isoformat() if row.closes_at else None,
        # The exam's end as it is now: a client that joined before an extension reads it here.
        "exam_ends_at": exam.ends_at.isoformat(),
        "recording": recording_dict(recording),
    }
    if logged_in:
        view["runs"] = segments_of.describe_runs(logged_in, by_run)
    return view


def exam_sessions(exam_id: int) -> list[dict]:
    """Every session of an exam with its progress, in one pass over the tables."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        rows = conn.execute(
            select(sessions).where(sessions.c.exam_id == exam_id).order_by(sessions.c.student_id)
        ).all()
        counts = dict(
            (sid, (n, top))
            for sid, n, top in conn.execute(
                select(segments.c.session_id, func.count(), func.max(case((segments.c.run == 0, segments.c.seq))))
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
    row = session_row(session_id)
    if row.state not in states.REQUEUEABLE:
        raise Conflict(
            f"session {session_id} is {row.state}; only a failed or finished session can be merged again",
            code="not_mergeable",
        )
    with engine().begin() as conn:
        states.requeue(conn, session_id, fresh_attempts=True)
    jobs.enqueue_merge(session_id)
