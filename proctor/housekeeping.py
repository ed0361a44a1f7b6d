"""Retention of old recordings and the sweep of stray temporary files."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from . import states, storage
from .config import settings
from .clock import utcnow
from .db import engine
from .schema import recordings

log = logging.getLogger(__name__)

TMP_MAX_AGE_S = 24 * 3600


def run() -> dict:
    return {"expired": expire_recordings(), "temp_files_removed": sweep_temp_files()}


def expire_recordings(days: int | None = None) -> list[int]:
    """Delete recordings older than ``days`` (default PROCTOR_RETENTION_DAYS; 0 keeps forever)."""
    days = settings().retention_days if days is None else days
    if days <= 0:
        return []
    cutoff = utcnow() - timedelta(days=days)
    with engine().connect() as conn:
        old = conn.execute(
            select(recordings.c.session_id, recordings.c.path).where(
                recordings.c.status.in_(states.PLAYABLE), recordings.c.updated_at < cutoff
            )
        ).all()
    for session_id, path in old:
        if path:
            storage.discard(settings().data_dir / path)
        with engine().begin() as conn:
            states.expire(conn, session_id)
    if old:
        log.info("retention removed the recordings of sessions %s", [s for s, _ in old])
    return [s for s, _ in old]


def sweep_temp_files(max_age_s: float = TMP_MAX_AGE_S) -> int:
    """Remove temporary files a crash left behind (uploads and merges use ``.tmp-*`` names)."""
    cutoff = time.time() - max_age_s
    removed = 0
    for root in (settings().segments_dir, settings().recordings_dir):
        for path in Path(root).rglob(f"{storage.TMP_PREFIX}*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed
