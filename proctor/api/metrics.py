"""Request metrics of the web app and ``GET /metrics`` (Prometheus text format)."""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from .. import metrics

bp = Blueprint("metrics", __name__)

# A client may send any method name; only these become label values, so it cannot grow the series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/metrics")
def scrape():
    body, content_type = metrics.exposition()
    # content_type, not mimetype: the exposition type already names its charset.
    return Response(body, content_type=content_type)


def install(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        if "started" in g:
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        return response

    app.register_blueprint(bp)
