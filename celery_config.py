"""The Celery app: ``celery -A celery_config.celery_app worker|beat|flower``.

The original design's entry point. The app, its queues, task names and reliability settings are
defined in ``proctor.worker``; this module only gives them the design's name.
"""
from proctor.worker import (  # noqa: F401 - re-exported under the design's names
    MERGE_QUEUE,
    STATUS_QUEUE,
    celery_app,
    task_soft_time_limit,
    task_time_limit,
)
