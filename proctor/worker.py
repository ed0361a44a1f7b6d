"""The Celery app, its queues and the names of its tasks, defined once.

``celery_config.celery_app`` (the original design's name) is this app; ``celery_tasks`` holds the
task bodies and the package sends them by name, so the web app never imports them. Broker and
result backend are the Redis at REDIS_URL. Every reliability setting below is chosen on purpose;
the comment on each says why.
"""
from __future__ import annotations

import threading

import redis
from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue

from . import locks
from .config import settings

cfg = settings()

# The original design's names; `redis-cli LLEN video_merge` shows the merge backlog.
STATUS_QUEUE = "status_check"
MERGE_QUEUE = "video_merge"
QUEUES = (STATUS_QUEUE, MERGE_QUEUE)
STATUS_CHECK_TASK = "celery_tasks.status_check_task"
MERGE_TASK = "celery_tasks.merge_videos_task"
RECONCILE_TASK = "celery_tasks.reconcile_task"
RETENTION_TASK = "celery_tasks.retention_task"
PROBE_TASK = "celery_tasks.probe_segment_task"
# The merge's per-session lease is the lock "merge:<session id>" (merge.lease_name).
MERGE_LEASE_PREFIX = "merge:"

task_time_limit = 1800  # hard limit: the merge process is killed after 30 min
task_soft_time_limit = 1500  # soft limit: the merge gets SoftTimeLimitExceeded first and cleans up

# Describing an upload parses it with FFmpeg's C code inside the pool process (media.quick_probe).
# Unlike a merge, that task is acknowledged on receipt and never redelivered: an upload that
# crashes the parser would otherwise kill a pool process at every delivery, and a lost description
# only costs its merge one ffprobe. A parser stuck within a frame is killed at the time limit.
PROBE_TASK_OPTIONS = {"acks_late": False, "reject_on_worker_lost": False, "time_limit": 60}

SETTINGS = dict(
    # Explicit queues and routes, and nothing auto-created: a task can only land in a queue that a
    # worker started by scripts/ or systemd/ reads.
    task_queues=(
        Queue(STATUS_QUEUE, Exchange(STATUS_QUEUE), routing_key=STATUS_QUEUE),
        Queue(MERGE_QUEUE, Exchange(MERGE_QUEUE), routing_key=MERGE_QUEUE),
    ),
    task_create_missing_queues=False,
    task_default_queue=MERGE_QUEUE,
    task_default_exchange=MERGE_QUEUE,
    task_default_routing_key=MERGE_QUEUE,
    task_routes={
        STATUS_CHECK_TASK: {"queue": STATUS_QUEUE},
        RECONCILE_TASK: {"queue": STATUS_QUEUE},
        RETENTION_TASK: {"queue": STATUS_QUEUE},
        MERGE_TASK: {"queue": MERGE_QUEUE},
        # Describing an upload is the merge's work done early, by the workers that have FFmpeg.
        PROBE_TASK: {"queue": MERGE_QUEUE},
    },
    task_time_limit=task_time_limit,
    task_soft_time_limit=task_soft_time_limit,
    # At-least-once delivery needs these three together: acknowledge only after the task ran, put
    # the message back when the worker process is killed (OOM, SIGKILL) and reserve one message at
    # a time so a long merge does not hold a second one hostage. (Not for the probe task: see
    # PROBE_TASK_OPTIONS.)
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Unacknowledged messages come back only after the visibility timeout; it must exceed the hard
    # time limit or a long merge would be delivered twice. Work whose whole worker died is brought
    # back sooner by reconcile_task, not by this timeout.
    broker_transport_options={"visibility_timeout": task_time_limit + 1800},
    result_backend_transport_options={"visibility_timeout": task_time_limit + 1800},
    # Results are only read by Flower and tests; keep them a day, not forever.
    result_expires=24 * 3600,
    # Progress (state PROGRESS) must be visible while the task runs.
    task_track_started=True,
    # Keep retrying the broker at start-up and after a Redis restart rather than exiting.
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    # Flower and `celery events` need the workers' events.
    worker_send_task_events=True,
    task_send_sent_event=True,
    # JSON only: a broker message must never be able to run code in a worker.
    accept_content=["json"],
    task_serializer="json",
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    beat_schedule={
        "status-check-every-30-seconds": {
            "task": STATUS_CHECK_TASK,
            "schedule": 30.0,
            # A stalled worker must not wake to a pile of stale checks: each expires with its period.
            "options": {"queue": STATUS_QUEUE, "expires": 25},
        },
        "reconcile-every-2-minutes": {
            "task": RECONCILE_TASK,
            "schedule": 120.0,
            "options": {"queue": STATUS_QUEUE, "expires": 110},
        },
        "retention-hourly": {
            "task": RETENTION_TASK,
            "schedule": 3600.0,
            "options": {"queue": STATUS_QUEUE, "expires": 3000},
        },
    },
    beat_schedule_filename=str(cfg.data_dir / "celerybeat-schedule"),
)

celery_app = Celery("proctor", broker=cfg.redis_url, backend=cfg.redis_url, include=["celery_tasks"])
celery_app.conf.update(SETTINGS)

# What the web app and the tasks send work with: the same broker, queues and settings, and no
# result backend, because nothing of ours waits for a result (the workers still store every one,
# for Flower and a merge's PROGRESS). With the backend, each send subscribed to the task's result
# channel on a Redis connection of its own for every greenlet (Celery keeps a backend per thread,
# and under gevent each greenlet is one), and making that backend scanned the entry points of
# every installed package: a tenth of the web workers' CPU at a hall's end (py-spy).
publisher = Celery("proctor", broker=cfg.redis_url, set_as_current=False)
publisher.conf.update(SETTINGS, result_backend_thread_safe=True)


@worker_ready.connect
def recover_merges_of_dead_workers(sender, **_kw) -> None:
    """A merge worker that starts (systemd restarted it after a crash, the host rebooted) has the
    merges whose worker died re-queued: their messages stay with the broker until the visibility
    timeout. Once now, for leases that already lapsed, and once more when the last lease held now
    lapses, for a worker that died just before this one started."""
    if MERGE_QUEUE not in sender.app.amqp.queues.consume_from:
        return
    publisher.send_task(RECONCILE_TASK, queue=MERGE_QUEUE)
    # A dead holder stopped renewing its lease when it died, up to a third of the ttl after its
    # last renewal: waiting for what the lease has left, not a whole ttl from now, re-queues its
    # merge as soon as that is safe. (A live holder's lease is renewed; reconcile leaves it be.)
    try:
        left = locks.longest_hold(MERGE_LEASE_PREFIX)
    except redis.RedisError:
        left = locks.LEASE_TTL_S  # cannot tell: as long as any lease may last
    if left <= 0:
        return
    # A timer here rather than a countdown task: a worker holding a countdown task does not
    # survive a Redis restart (celery 5.7.0; see tests/test_faults.py).
    later = threading.Timer(left + 1, publisher.send_task, args=(RECONCILE_TASK,),
                            kwargs={"queue": MERGE_QUEUE})
    later.daemon = True
    later.start()
