"""The Celery tasks, by the names the original design fixed.

Thin wrappers: the status check lives in ``proctor.status``, the merge and its retry policy in
``proctor.merge``, housekeeping in ``proctor.housekeeping``.
"""
from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from proctor import housekeeping, merge, metrics, segment_probes, states, status
from proctor.worker import (
    MERGE_TASK,
    PROBE_TASK,
    PROBE_TASK_OPTIONS,
    RECONCILE_TASK,
    RETENTION_TASK,
    STATUS_CHECK_TASK,
    celery_app,
)

log = get_task_logger(__name__)


@celery_app.task(name=STATUS_CHECK_TASK)
def status_check_task() -> dict:
    """Every 30 s: move exams along their schedule and mark silent students offline."""
    result = status.run_status_check()
    log.info("status check: %s", result)
    return result


@celery_app.task(name=MERGE_TASK, bind=True, max_retries=None)
def merge_videos_task(self, session_id: int) -> dict:
    """Merge one finished session's segments into its recording (idempotent)."""
    session_id = int(session_id)

    def report_progress(fraction: float) -> None:
        self.update_state(state="PROGRESS", meta={"session_id": session_id, "progress": round(fraction, 3)})

    started = time.monotonic()
    try:
        outcome = merge.merge_session(session_id, on_progress=report_progress, task_id=self.request.id)
    except SoftTimeLimitExceeded:
        # A merge this long would time out again on retry: record why and keep the segments;
        # raising the limits in proctor/worker.py and POST /api/sessions/<sid>/merge retries it.
        merge.fail(session_id, f"the merge exceeded the soft time limit of {celery_app.conf.task_soft_time_limit} s")
        metrics.MERGES.labels(states.FAILED).inc()
        return {"session_id": session_id, "status": states.FAILED, "detail": "time limit"}
    except merge.Transient as err:
        metrics.MERGES.labels("retry").inc()
        countdown = merge.retry_delay(session_id, err)
        if countdown is None:
            return {"session_id": session_id, "status": states.FAILED, "detail": str(err)}
        log.warning("merge of session %s failed (%s); retry in %.0fs", session_id, err, countdown)
        raise self.retry(exc=err, countdown=countdown) from err
    metrics.MERGES.labels(outcome.status).inc()
    if outcome.status in (*states.DONE, states.FAILED):
        metrics.MERGE_SECONDS.observe(time.monotonic() - started)
    log.info("merge of session %s: %s", session_id, outcome.as_dict())
    return outcome.as_dict()


@celery_app.task(name=PROBE_TASK, ignore_result=True, **PROBE_TASK_OPTIONS)
def probe_segment_task(session_id: int, run: int, seq: int) -> bool:
    """After each upload: describe the segment for the merge to come."""
    return segment_probes.describe(int(session_id), int(run), int(seq))


@celery_app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile_task() -> dict:
    """Every 2 minutes: queue merges that were lost or whose worker died."""
    return merge.reconcile()


@celery_app.task(name=RETENTION_TASK, ignore_result=True)
def retention_task() -> dict:
    """Hourly: remove recordings past PROCTOR_RETENTION_DAYS and stray temporary files."""
    return housekeeping.run()
