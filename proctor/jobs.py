"""Handing work to the Celery workers.

The web app sends tasks by name so it never imports the task bodies (and FFmpeg machinery). A
failure to reach the broker is logged, not raised: the finish is already in the database, and the
reconcile task queues every finished session that has no live merge.

A ``merge:queued:<sid>`` marker in Redis says a merge message is in the queue; the task clears
it when it starts. Reconcile uses it to tell "waiting in a long backlog" from "lost".
"""
from __future__ import annotations

import logging
import uuid

from . import locks, redis_client
from .worker import MERGE_QUEUE, MERGE_TASK, PROBE_TASK, publisher

log = logging.getLogger(__name__)

MARKER_TTL_S = 7 * 24 * 3600
# A description not made within this long is of no use any more: the merge probes for itself.
PROBE_EXPIRES_S = 3600


def queued_marker(session_id: int) -> str:
    return redis_client.key("merge", "queued", session_id)


def enqueue_merge(session_id: int, countdown: float | None = None) -> str | None:
    task_id = uuid.uuid4().hex
    try:
        mark_queued(session_id, task_id)
        publisher.send_task(
            MERGE_TASK, args=[session_id], queue=MERGE_QUEUE, countdown=countdown, task_id=task_id
        )
    except Exception:  # noqa: BLE001 - any broker failure; reconcile_task recovers it
        log.exception("could not queue the merge of session %s; reconcile will retry", session_id)
        return None
    return task_id


def enqueue_probe(session_id: int, run: int, seq: int) -> None:
    """Have a merge worker describe a stored segment now (``segment_probes.describe``), so the
    merge at the exam's end does not. Best effort: without it the merge probes the segment."""
    try:
        # Nobody reads a description's result; a message says whether to keep it, and a send
        # without the flag says keep, whatever the task declares.
        publisher.send_task(PROBE_TASK, args=[session_id, run, seq], queue=MERGE_QUEUE, expires=PROBE_EXPIRES_S,
                            ignore_result=True)
    except Exception:  # noqa: BLE001 - any broker failure; the upload is stored all the same
        log.warning("could not queue the probe of segment %s of session %s", seq, session_id)


def mark_queued(session_id: int, task_id: str) -> None:
    """A merge message for the session is in the queue (or a retry of one is scheduled)."""
    redis_client.client().set(queued_marker(session_id), task_id, ex=MARKER_TTL_S)


def is_queued(session_id: int) -> bool:
    return bool(redis_client.client().exists(queued_marker(session_id)))


def clear_queued(session_id: int, task_id: str | None = None) -> None:
    """Remove the marker; with ``task_id``, only while it names that message (not a newer one)."""
    if task_id is None:
        redis_client.client().delete(queued_marker(session_id))
    else:
        locks.delete_if(queued_marker(session_id), task_id)
