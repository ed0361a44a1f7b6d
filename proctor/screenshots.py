"""Screenshots: periodic ones, frames and those attached to violations, stored like segments.

An image streams into a temporary file next to its final place (``storage.stage_stream``), its
first bytes must be a PNG or JPEG signature, and only then is it linked under a name the server
chooses and recorded. Size is bounded by ``PROCTOR_MAX_SCREENSHOT_BYTES`` before anything is read.
"""
from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import insert, select

from . import filetypes, storage
from .config import settings
from .clock import utcnow
from .db import engine
from .schema import screenshots, sessions
from .errors import Conflict, NotFound, UnsupportedMediaType

KINDS = ("periodic", "frame", "violation")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}


def session_dir(session_id: int) -> Path:
    return settings().screenshots_dir / str(session_id)


def store(session_id: int, kind: str, body: BinaryIO, length: int,
          captured_at: datetime | None = None) -> dict:
    """Stream, check and record one image; returns its description."""
    assert kind in KINDS
    _check_session(session_id)
    storage.check_size(length, settings().max_screenshot_bytes, "screenshot")
    directory = session_dir(session_id)
    staged = storage.stage_stream(body, directory, length)
    try:
        media_type = _staged_type(staged.path)
        final = directory / f"{kind}-{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.{EXTENSIONS[media_type]}"
        if not storage.publish(staged, final):  # a random name collided: vanishingly rare
            raise Conflict("could not name the screenshot; send it again", code="retry")
    finally:
        storage.discard(staged.path)
    with engine().begin() as conn:
        shot_id = conn.execute(
            insert(screenshots).values(
                session_id=session_id,
                kind=kind,
                captured_at=captured_at,
                received_at=utcnow(),
                size=staged.size,
                sha256=staged.sha256,
                media_type=media_type,
                path=str(final.relative_to(settings().data_dir)),
            )
        ).inserted_primary_key[0]
    return get(shot_id)


def _staged_type(path: Path) -> str:
    """The image type its first bytes say: the client's Content-Type is not trusted."""
    media_type = filetypes.sniff_file(path)
    if media_type not in filetypes.IMAGE_TYPES:
        raise UnsupportedMediaType("a screenshot must be a PNG or JPEG image")
    return media_type


def _check_session(session_id: int) -> None:
    """Any session that exists takes screenshots: one can arrive after the session finished (the
    seat's last upload), and it is evidence whatever the state of the recording."""
    with engine().connect() as conn:
        found = conn.execute(select(sessions.c.id).where(sessions.c.id == session_id)).first()
    if found is None:
        raise NotFound(f"session {session_id} does not exist")


def shot_dict(row) -> dict:
    return {
        "id": row.id,
        "session_id": row.session_id,
        "kind": row.kind,
        "media_type": row.media_type,
        "size": row.size,
        "sha256": row.sha256,
        "captured_at": row.captured_at.isoformat() if row.captured_at else None,
        "received_at": row.received_at.isoformat(),
        "archived": row.path is None,
    }


def _row(shot_id: int):
    with engine().connect() as conn:
        row = conn.execute(select(screenshots).where(screenshots.c.id == shot_id)).first()
    if row is None:
        raise NotFound(f"screenshot {shot_id} does not exist")
    return row


def get(shot_id: int) -> dict:
    return shot_dict(_row(shot_id))


def file_of(shot_id: int) -> tuple[Path, dict]:
    """Where the image is on disk, for serving it back to the teacher."""
    row = _row(shot_id)
    if row.path is None:
        raise Conflict(f"screenshot {shot_id} was archived", code="archived")
    path = settings().data_dir / row.path
    if not path.is_file():
        raise Conflict(f"screenshot {shot_id} is no longer on disk", code="screenshot_gone")
    return path, shot_dict(row)


def list_for_session(session_id: int, kind: str | None = None) -> list[dict]:
    query = select(screenshots).where(screenshots.c.session_id == session_id)
    if kind:
        query = query.where(screenshots.c.kind == kind)
    with engine().connect() as conn:
        return [shot_dict(r) for r in conn.execute(query.order_by(screenshots.c.id))]


def session_of(shot_id: int) -> int:
    return _row(shot_id).session_id
