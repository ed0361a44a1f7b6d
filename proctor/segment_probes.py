"""What each stored segment holds, learnt when it arrives, so the merge need not ask again.

A merge must know every segment's streams: to join them by stream copy only when all have one
shape (otherwise a later segment's frames are decoded with the first one's parameters), to skip
unreadable ones, and to know how long the result must last. Asking ffprobe for 60 segments at the
exam's end cost several seconds before FFmpeg started, most of it ffprobe's own start-up, at the
moment every session of the hall is merged at once.

Probing only the first segment and trusting the verification of the joined file does not keep
those guarantees: the output's header describes the first file only, so a later segment of
another size or codec still adds up to the right duration, and the expected duration would come
from the very files being joined. So each upload is probed once, by the merge worker while the
exam runs (``jobs.enqueue_probe`` after the segment is recorded), and the description is kept in
Redis under the segment's SHA-256: content-addressed, it can never describe other bytes, and no
table changes. The probe is ``media.quick_probe``: what ffprobe would say, read in-process with
FFmpeg's libraries, since spawning ffprobe for every upload cost cores in a large hall. Losing a
description (a Redis restart, the key's expiry) only costs the merge that probe. The merge
engine trusts a description only as far as its output verifies (see ``media.engine``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict

import redis
from sqlalchemy import select

from . import media, storage
from .db import engine
from .media.quick_probe import quick_probe
from .redis_client import client, key
from .schema import segments

log = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600  # longer than any exam and the merges after it


def probe_key(sha256: str) -> str:
    # "v1": the stored shape is ProbeInfo's fields; a change of them gets new keys.
    return key("probe", "v1", sha256)


def describe(session_id: int, run: int, seq: int) -> bool:
    """Probe one stored segment and keep what ffprobe says; False when there is nothing to keep
    (the segment is gone, or unreadable: the merge probes it again and reports why)."""
    with engine().connect() as conn:
        row = conn.execute(
            select(segments.c.sha256, segments.c.media_type)
            .where(segments.c.session_id == session_id, segments.c.run == run, segments.c.seq == seq,
                   segments.c.deleted_at.is_(None))
        ).first()
    if row is None:
        return False
    path = storage.segment_path(session_id, run, seq, row.media_type)
    try:
        info = quick_probe(path)
    except (media.MediaError, OSError) as err:
        log.info("segment %s of session %s not described: %s", seq, session_id, err)
        return False
    if info is None:
        return False  # a kind of file only ffprobe describes: the merge will
    client().set(probe_key(row.sha256), json.dumps(asdict(info)), ex=KEEP_S)
    return True


def known(sha256s: list[str]) -> dict[str, media.ProbeInfo]:
    """The kept descriptions of these contents, in one round trip; none when Redis cannot say."""
    if not sha256s:
        return {}
    try:
        found = client().mget([probe_key(digest) for digest in sha256s])
    except redis.RedisError as err:
        log.warning("kept segment descriptions unavailable (%s); the merge probes every segment", err)
        return {}
    described = {}
    for digest, raw in zip(sha256s, found):
        info = _probe_info(raw)
        if info is not None:
            described[digest] = info
    return described


def forget(sha256s: list[str]) -> None:
    """The descriptions of segments merged and deleted are of no more use: free their memory
    (best effort: they expire anyway)."""
    if not sha256s:
        return
    try:
        client().delete(*[probe_key(digest) for digest in sha256s])
    except redis.RedisError as err:
        log.warning("kept segment descriptions not removed (%s); they expire in %d s", err, KEEP_S)


def _probe_info(raw: str | None) -> media.ProbeInfo | None:
    if raw is None:
        return None
    try:
        return media.ProbeInfo(**json.loads(raw))
    except (ValueError, TypeError):
        return None  # not what this version writes: probe instead
