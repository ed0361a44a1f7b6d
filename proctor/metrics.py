"""Prometheus metrics (``GET /metrics``).

Counters and histograms are observed where things happen (requests in the web app through
``proctor.api.metrics``, merges in the merge worker); this module imports nothing of Flask, so the
worker never loads it. With several Gunicorn workers and Celery processes, prometheus_client's
multiprocess mode aggregates them: every process gets the same PROMETHEUS_MULTIPROC_DIR (the start
scripts and systemd units set it). Figures that live in Redis or the database (queue depth, the
last status check, sessions by state) are read at scrape time by a collector instead.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from . import runs, stats

REQUESTS = Counter("proctor_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "proctor_http_request_duration_seconds", "HTTP request latency", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
UPLOAD_BYTES = Counter("proctor_upload_bytes_total", "Bytes of segments stored")
HEARTBEATS = Counter("proctor_heartbeats_total", "Heartbeats received")
MERGES = Counter("proctor_merges_total", "Merge runs by outcome", ["outcome"])
MERGE_SECONDS = Histogram(
    "proctor_merge_duration_seconds", "Duration of merge runs",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)


class _LiveFigures:
    """Read at scrape time: queue depth, recordings by status (from the database, so right
    whichever host merged them) and the last status check."""

    def collect(self):
        recordings = GaugeMetricFamily("proctor_recordings", "Recordings by status", labels=["status"])
        for status, count in stats.recordings_by_status().items():
            recordings.add_metric([status], count)
        yield recordings

        depth = GaugeMetricFamily("proctor_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        for queue, length in stats.queue_backlog().items():
            depth.add_metric([queue], length)
        yield depth
        last = runs.last_status_check() or {}
        yield GaugeMetricFamily(
            "proctor_status_check_duration_seconds", "Duration of the last status check",
            value=float(last.get("duration_s") or 0),
        )


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(reg)
    else:
        from prometheus_client import REGISTRY

        reg = REGISTRY
    return reg


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    live = CollectorRegistry()
    live.register(_LiveFigures())
    return generate_latest(registry()) + generate_latest(live), CONTENT_TYPE_LATEST
