"""Exams: creation with an optional roster, a copy of one, listing, counts, the teacher's edits,
delete, roster changes and overlap warnings. What ending an exam does to its sessions is in
``lifecycle``; who sits it, for the teacher, in ``attendance``."""
from __future__ import annotations

import shutil
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from . import presence, states, tokens
from .clock import utcnow
from .codes import ENTRY_CODE_LENGTH, grouped, new_code
from .config import settings
from .db import engine
from .errors import BadRequest, Conflict, NotFound
from .schema import exams, recordings, roster, screenshots, segments, sessions

COPY_SUFFIX = " (copy)"


def exam_dict(row) -> dict:
    """An exam as the teacher sees it (its entry code included: only teachers' calls show it)."""
    return {
        "id": row.id,
        "title": row.title,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "status": row.status,
        "entry_code": row.entry_code and grouped(row.entry_code),
    }


def create_exam(title: str, starts_at: datetime, ends_at: datetime, students: list[dict] | None,
                seat_settings: dict | None = None) -> dict:
    with engine().begin() as conn:
        exam_id = conn.execute(
            insert(exams).values(
                title=title,
                starts_at=starts_at,
                ends_at=ends_at,
                scheduled_ends_at=ends_at,
                # Created already running or over: the status check would say the same within 30 s.
                status=states.exam_status_at(starts_at, ends_at, utcnow()),
                roster_restricted=students is not None,
                created_at=utcnow(),
                entry_code=new_code(ENTRY_CODE_LENGTH),
                settings=seat_settings,
            )
        ).inserted_primary_key[0]
        if students:
            conn.execute(insert(roster), [{"exam_id": exam_id, **s} for s in students])
        return exam_dict(conn.execute(select(exams).where(exams.c.id == exam_id)).one())


def copy_exam(exam_id: int, title: str | None, starts_at: datetime, ends_at: datetime) -> dict:
    """A new exam at other times with this one's roster (or none, like it) and seat settings; its
    own entry code, no invigilator password, no sessions. No title: ``copy_title`` of this one's."""
    with engine().connect() as conn:
        source = get_exam_row(conn, exam_id)
        students = [dict(r._mapping) for r in conn.execute(
            select(roster.c.student_id, roster.c.name).where(roster.c.exam_id == exam_id).order_by(roster.c.id))]
    return create_exam(title or copy_title(source.title), starts_at, ends_at,
                       students if source.roster_restricted else None, source.settings)


def copy_title(title: str) -> str:
    """The title a copy gets unless given one: this one's and " (copy)", within 200 characters."""
    return title[:200 - len(COPY_SUFFIX)] + COPY_SUFFIX


def get_exam_row(conn, exam_id: int):
    row = conn.execute(select(exams).where(exams.c.id == exam_id)).first()
    if row is None:
        raise NotFound(f"exam {exam_id} does not exist")
    return row


def list_exams() -> list[dict]:
    with engine().connect() as conn:
        return [exam_dict(r) for r in conn.execute(select(exams).order_by(exams.c.id))]


def exam_detail(exam_id: int) -> dict:
    with engine().connect() as conn:
        row = get_exam_row(conn, exam_id)
        exam = exam_dict(row)
        by_state = dict(
            conn.execute(
                select(sessions.c.state, func.count())
                .where(sessions.c.exam_id == exam_id)
                .group_by(sessions.c.state)
            ).all()
        )
        by_presence = dict(
            conn.execute(
                select(sessions.c.presence, func.count())
                .where(sessions.c.exam_id == exam_id, sessions.c.state == states.ACTIVE)
                .group_by(sessions.c.presence)
            ).all()
        )
        roster_size = conn.execute(
            select(func.count()).select_from(roster).where(roster.c.exam_id == exam_id)
        ).scalar_one()
    exam["roster_size"] = roster_size
    # False: created without a roster, anyone with the entry code may join (a roster added later
    # lists who is expected, and keeps nobody out).
    exam["roster_restricted"] = row.roster_restricted
    exam["sessions"] = {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "by_presence": {"online": by_presence.get("online", 0), "offline": by_presence.get("offline", 0)},
    }
    return exam


# --- teacher's view, delete, roster, overlaps ----------------------------------------------


def exam_admin_dict(exam_id: int) -> dict:
    """The detail view plus the seat settings and any roster overlap, for the teacher's edits."""
    detail = exam_detail(exam_id)
    with engine().connect() as conn:
        detail["settings"] = get_exam_row(conn, exam_id).settings or {}
    detail["warnings"] = overlap_warnings(exam_id)
    return detail


def changed_values(row, changes: dict, now: datetime) -> dict:
    """The columns a teacher's edit changes; times of a completed exam stay as they were."""
    values: dict = {}
    if "title" in changes:
        values["title"] = changes["title"]
    if "settings" in changes:
        values["settings"] = {**(row.settings or {}), **changes["settings"]}
    if "starts_at" in changes or "ends_at" in changes:
        if row.status == states.COMPLETED:
            raise Conflict(f"exam {row.id} is completed; its times can no longer change", code="exam_completed")
        starts = changes.get("starts_at") or row.starts_at
        ends = changes.get("ends_at") or row.ends_at
        if ends <= starts:
            raise BadRequest("ends_at must be after starts_at", code="invalid_body")
        values.update(starts_at=starts, ends_at=ends, status=states.exam_status_at(starts, ends, now))
        if now < row.starts_at:
            values["scheduled_ends_at"] = ends
    return values


def files_kept(exam_id: int) -> dict:
    """Recordings, segments and screenshots of the exam still in the data directory."""
    sids = select(sessions.c.id).where(sessions.c.exam_id == exam_id)
    with engine().connect() as conn:
        counts = {
            "recordings": conn.execute(
                select(func.count()).select_from(recordings)
                .where(recordings.c.session_id.in_(sids), recordings.c.path.is_not(None))
            ).scalar_one(),
            "segments": conn.execute(
                select(func.count()).select_from(segments)
                .where(segments.c.session_id.in_(sids), segments.c.deleted_at.is_(None))
            ).scalar_one(),
            "screenshots": conn.execute(
                select(func.count()).select_from(screenshots)
                .where(screenshots.c.session_id.in_(sids), screenshots.c.path.is_not(None))
            ).scalar_one(),
        }
    return counts


def delete_exam(exam_id: int, force: bool = False) -> dict:
    """Delete an exam with its sessions. Refused while files remain unless archived or forced."""
    with engine().connect() as conn:
        get_exam_row(conn, exam_id)
        sids = conn.execute(select(sessions.c.id).where(sessions.c.exam_id == exam_id)).scalars().all()
    kept = files_kept(exam_id)
    if any(kept.values()) and not force:
        raise Conflict(
            f"exam {exam_id} still has {kept['recordings']} recordings, {kept['segments']} segments and "
            f"{kept['screenshots']} screenshots on disk; archive it first or delete with force",
            code="has_recordings",
        )
    _remove_files(exam_id, sids)
    with engine().begin() as conn:
        conn.execute(exams.delete().where(exams.c.id == exam_id))  # sessions and the rest cascade
    return {"deleted": exam_id, "files_removed": kept}


def _remove_files(exam_id: int, session_ids: list[int]) -> None:
    with engine().connect() as conn:
        paths = conn.execute(
            select(recordings.c.path).where(recordings.c.session_id.in_(session_ids), recordings.c.path.is_not(None))
        ).scalars().all()
        hashes = conn.execute(select(sessions.c.token_hash).where(sessions.c.id.in_(session_ids))).scalars().all()
    tokens.forget(hashes)
    for path in paths:
        (settings().data_dir / path).unlink(missing_ok=True)
    for sid in session_ids:
        presence.forget(sid)
        shutil.rmtree(settings().segments_dir / str(sid), ignore_errors=True)
        shutil.rmtree(settings().screenshots_dir / str(sid), ignore_errors=True)


def add_to_roster(exam_id: int, entries: list[dict]) -> dict:
    """Add students (those already on it are left as they are), all or none; returns what changed
    and overlaps."""
    with engine().begin() as conn:
        added = roster_additions(conn, exam_id, entries)
    return roster_answer(exam_id, entries, added)


def roster_additions(conn, exam_id: int, entries: list[dict]) -> list[str]:
    """Insert the students not yet on the roster in ``conn``'s transaction; their ids. A student
    added by someone else meanwhile refuses the whole addition (409), which the caller may retry."""
    get_exam_row(conn, exam_id)
    ids = [e["student_id"] for e in entries]
    present = set(
        conn.execute(select(roster.c.student_id).where(roster.c.exam_id == exam_id, roster.c.student_id.in_(ids))).scalars()
    ) if entries else set()
    new = [e for e in entries if e["student_id"] not in present]
    if new:
        try:
            conn.execute(insert(roster), [{"exam_id": exam_id, **e} for e in new])
        except IntegrityError:
            raise Conflict(f"the roster of exam {exam_id} changed meanwhile: send it again", code="roster_changed") from None
    return [e["student_id"] for e in new]


def roster_answer(exam_id: int, entries: list[dict], added: list[str]) -> dict:
    ids = {e["student_id"] for e in entries}
    return {
        "added": added,
        "already_on_roster": sorted(ids - set(added)),
        "warnings": [w for w in overlap_warnings(exam_id) if w["student_id"] in ids],
    }


def remove_from_roster(exam_id: int, student_id: str) -> None:
    """Take a student off the roster; a session they already have stays (and its recording)."""
    with engine().begin() as conn:
        get_exam_row(conn, exam_id)
        deleted = conn.execute(
            roster.delete().where(roster.c.exam_id == exam_id, roster.c.student_id == student_id)
        ).rowcount
    if not deleted:
        raise NotFound(f"student {student_id} is not on the roster of exam {exam_id}")


def overlap_warnings(exam_id: int) -> list[dict]:
    """Students of this exam's roster who are on another unfinished exam at an overlapping time."""
    other, mine, theirs = exams.alias("other"), roster.alias("mine"), roster.alias("theirs")
    query = (
        select(mine.c.student_id, other.c.id, other.c.title, other.c.starts_at, other.c.ends_at)
        .select_from(
            mine.join(exams, exams.c.id == mine.c.exam_id)
            .join(theirs, theirs.c.student_id == mine.c.student_id)
            .join(other, other.c.id == theirs.c.exam_id)
        )
        .where(
            mine.c.exam_id == exam_id,
            other.c.id != exam_id,
            other.c.status != states.COMPLETED,
            other.c.starts_at < exams.c.ends_at,
            other.c.ends_at > exams.c.starts_at,
        )
        .order_by(mine.c.student_id, other.c.id)
    )
    with engine().connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "student_id": r.student_id,
            "exam_id": r.id,
            "title": r.title,
            "starts_at": r.starts_at.isoformat(),
            "ends_at": r.ends_at.isoformat(),
            "message": f"student {r.student_id} is also on exam {r.id} ({r.title}) at an overlapping time",
        }
        for r in rows
    ]
