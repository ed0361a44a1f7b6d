"""Archive of a finished exam.

``archive_exam`` moves the exam's recordings, screenshots and any segments a failed merge left to a
backup directory (``PROCTOR_ARCHIVE_DIR`` or the one given), safely across filesystems: each file
is copied to a temporary name there, fsynced, renamed, read back and its SHA-256 compared with the
one recorded at upload or merge; only then is the move recorded in the database and the original
deleted. A crash at any point leaves either the original or a verified copy (a re-run finishes the
move). ``archives`` and ``archive_items`` record where every file went; a ``manifest.json`` beside
the files says the same.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update

from . import states, storage
from .clock import utcnow
from .config import settings
from .db import engine
from .errors import Conflict
from .exams import get_exam_row
from .schema import archive_items, archives, recordings, screenshots, segments, sessions


@dataclass(frozen=True)
class Item:
    kind: str  # recording | screenshot | segment
    ref_id: int
    session_id: int
    source: str  # relative to the data directory
    sha256: str


# --- archive -----------------------------------------------------------------------------------


def archive_exam(exam_id: int, dest_root: Path | None = None) -> dict:
    exam = _settled_exam(exam_id)
    dest = Path(dest_root or settings().archive_dir).resolve() / f"exam-{exam_id}"
    dest.mkdir(parents=True, exist_ok=True)
    with engine().begin() as conn:
        archive_id = conn.execute(
            insert(archives).values(exam_id=exam_id, exam_title=exam.title, directory=str(dest),
                                    files=0, bytes=0, created_at=utcnow())
        ).inserted_primary_key[0]
    moved, total = [], 0
    try:
        for item in _items(exam_id):
            target = dest / item.source
            size = copy_verified(settings().data_dir / item.source, target, item.sha256)
            _record_move(archive_id, item, target, size)
            storage.discard(settings().data_dir / item.source)  # only now: the copy is proven
            moved.append({"kind": item.kind, "ref_id": item.ref_id, "dest": str(target)})
            total += size
    finally:  # a run stopped by an error still says what it moved
        with engine().begin() as conn:
            conn.execute(update(archives).where(archives.c.id == archive_id).values(files=len(moved), bytes=total))
    result = {"archive_id": archive_id, "exam_id": exam_id, "directory": str(dest), "files": len(moved), "bytes": total}
    _write_manifest(dest, archive_id, result)
    return result


def _settled_exam(exam_id: int):
    with engine().connect() as conn:
        exam = get_exam_row(conn, exam_id)
        busy = conn.execute(
            select(sessions.c.id, sessions.c.state)
            .where(sessions.c.exam_id == exam_id, sessions.c.state.not_in(states.SETTLED))
        ).all()
    if exam.status != states.COMPLETED:
        raise Conflict(f"exam {exam_id} is {exam.status}; only a completed exam is archived", code="exam_not_completed")
    if busy:
        raise Conflict(
            f"exam {exam_id} still has sessions being finished or merged: {[f'{s}:{st}' for s, st in busy[:10]]}",
            code="merges_pending",
        )
    return exam


def _items(exam_id: int) -> list[Item]:
    sids = select(sessions.c.id).where(sessions.c.exam_id == exam_id)
    with engine().connect() as conn:
        recs = conn.execute(
            select(recordings.c.id, recordings.c.session_id, recordings.c.path, recordings.c.sha256)
            .where(recordings.c.session_id.in_(sids), recordings.c.path.is_not(None))
        ).all()
        shots = conn.execute(
            select(screenshots.c.id, screenshots.c.session_id, screenshots.c.path, screenshots.c.sha256)
            .where(screenshots.c.session_id.in_(sids), screenshots.c.path.is_not(None))
        ).all()
        segs = conn.execute(
            select(segments.c.id, segments.c.session_id, segments.c.run, segments.c.seq, segments.c.media_type,
                   segments.c.sha256)
            .where(segments.c.session_id.in_(sids), segments.c.deleted_at.is_(None))
        ).all()
    data = settings().data_dir
    items = [Item("recording", r.id, r.session_id, r.path, r.sha256) for r in recs]
    items += [Item("screenshot", s.id, s.session_id, s.path, s.sha256) for s in shots]
    items += [
        Item("segment", s.id, s.session_id,
             str(storage.segment_path(s.session_id, s.run, s.seq, s.media_type).relative_to(data)), s.sha256)
        for s in segs
    ]
    return items


def copy_verified(source: Path, target: Path, sha256: str) -> int:
    """Copy ``source`` to ``target`` (any filesystem) and prove the copy; returns its size.

    A target already there with the right checksum is what an interrupted earlier run left: kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and storage.sha256_file(target) == sha256:
        return target.stat().st_size
    if not source.is_file():
        raise Conflict(f"{source} is missing and no verified copy exists at {target}", code="file_missing")
    fd, tmp = tempfile.mkstemp(prefix=storage.TMP_PREFIX, dir=target.parent)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, storage.CHUNK)
            out.flush()
            storage.sync(out.fileno())
        os.replace(tmp, target)
        storage.fsync_dir(target.parent)
    except BaseException:
        storage.discard(Path(tmp))
        raise
    # Read back what the destination holds, not what was written: that is what a restore gets.
    actual = storage.sha256_file(target)
    if actual != sha256:
        storage.discard(target)
        raise Conflict(f"copy of {source} has SHA-256 {actual}, expected {sha256}; original kept",
                       code="checksum_mismatch")
    return target.stat().st_size


def _record_move(archive_id: int, item: Item, target: Path, size: int) -> None:
    now = utcnow()
    with engine().begin() as conn:
        conn.execute(
            insert(archive_items).values(
                archive_id=archive_id, kind=item.kind, ref_id=item.ref_id, session_id=item.session_id,
                source=item.source, dest=str(target), size=size, sha256=item.sha256,
            )
        )
        if item.kind == "recording":
            states.archived(conn, item.session_id, now)
        elif item.kind == "screenshot":
            conn.execute(update(screenshots).where(screenshots.c.id == item.ref_id).values(path=None))
        else:
            conn.execute(update(segments).where(segments.c.id == item.ref_id).values(deleted_at=now))


def _write_manifest(dest: Path, archive_id: int, summary: dict) -> None:
    with engine().connect() as conn:
        rows = conn.execute(select(archive_items).where(archive_items.c.archive_id == archive_id)).all()
    manifest = {
        **summary,
        "created_at": utcnow().isoformat(),
        "items": [
            {"kind": r.kind, "ref_id": r.ref_id, "session_id": r.session_id, "source": r.source,
             "dest": r.dest, "size": r.size, "sha256": r.sha256}
            for r in rows
        ],
    }
    path = dest / f"manifest-{archive_id}.json"
    path.write_text(json.dumps(manifest, indent=2))


def archives_of(exam_id: int) -> list[dict]:
    with engine().connect() as conn:
        rows = conn.execute(select(archives).where(archives.c.exam_id == exam_id).order_by(archives.c.id)).all()
    return [
        {"id": r.id, "directory": r.directory, "files": r.files, "bytes": r.bytes, "created_at": r.created_at.isoformat()}
        for r in rows
    ]
