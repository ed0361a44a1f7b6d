"""The Celery tasks, by the names the original design fixed.

Thin wrappers: the status check lives in ``proctor.status``, the merge in ``proctor.merge``,
housekeeping in ``proctor.housekeeping``.
"""
from __future__ import annotations

import random
import time

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from celery_config import celery_app
from proctor import housekeeping, merge, metrics, status
from proctor.config import settings

log = get_task_logger(__name__)


@celery_app.task(name="celery_tasks.status_check_task")
def status_check_task() -> dict:
    """Every 30 s: move exams along their schedule and mark silent students offline."""
    result = status.run_status_check()
    log.info("status check: %s", result)
    return result


@celery_app.task(name="celery_tasks.merge_videos_task", bind=True, max_retries=None)
def merge_videos_task(self, session_id: int) -> dict:
    """Merge one finished session's segments into its recording (idempotent)."""

    def report_progress(fraction: float) -> None:
        self.update_state(state="PROGRESS", meta={"session_id": session_id, "progress": round(fraction, 3)})

    started = time.monotonic()
    try:
        outcome = merge.merge_session(int(session_id), on_progress=report_progress, task_id=self.request.id)
    except SoftTimeLimitExceeded:
        # A merge this long would time out again on retry: record why and keep the segments;
        # raising the limits in celery_config.py and POST /api/sessions/<sid>/merge retries it.
        merge.fail(int(session_id), f"the merge exceeded the soft time limit of {celery_app.conf.task_soft_time_limit} s")
        metrics.MERGES.labels("failed").inc()
        return {"session_id": session_id, "status": "failed", "detail": "time limit"}
    except merge.Transient as err:
        metrics.MERGES.labels("retry").inc()
        attempts = merge.attempts(int(session_id))
        if attempts >= settings().merge_max_attempts:
            merge.fail(int(session_id), f"{err} (after {attempts} attempts)")
            return {"session_id": session_id, "status": "failed", "detail": str(err)}
        # Exponential backoff with jitter so retries of many sessions do not arrive together.
        base = settings().merge_retry_base_s
        countdown = (2**attempts) * base + random.uniform(0, base)
        log.warning("merge of session %s failed (%s); retry in %.0fs", session_id, err, countdown)
        raise self.retry(exc=err, countdown=countdown) from err
    metrics.MERGES.labels(outcome.status).inc()
    if outcome.status in ("merged", "partial", "failed"):
        metrics.MERGE_SECONDS.observe(time.monotonic() - started)
    log.info("merge of session %s: %s", session_id, outcome.as_dict())
    return outcome.as_dict()


@celery_app.task(name="celery_tasks.reconcile_task", ignore_result=True)
def reconcile_task() -> dict:
    """Every 2 minutes: queue merges that were lost or whose worker died."""
    return merge.reconcile()


@celery_app.task(name="celery_tasks.retention_task", ignore_result=True)
def retention_task() -> dict:
    """Hourly: remove recordings past PROCTOR_RETENTION_DAYS and stray temporary files."""
    return housekeeping.run()
