"""proctor: a self-hosted backend for screen-recorded online exams."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .config import settings
from .logs import configure_logging, install_request_ids


def create_app() -> Flask:
    """Application factory used by ``server.py`` (and so by Gunicorn and the tests)."""
    cfg = settings()
    configure_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # segment size is checked per route, before reading
    app.json.sort_keys = False
    cfg.segments_dir.mkdir(parents=True, exist_ok=True)
    cfg.recordings_dir.mkdir(parents=True, exist_ok=True)

    if cfg.trusted_proxies > 0:
        # Behind N reverse proxies the seat's address is in X-Forwarded-For; without this every
        # seat would share the proxy's address (legacy seat binding and rate limits need it).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=cfg.trusted_proxies, x_proto=cfg.trusted_proxies)
    install_request_ids(app)
    metrics.install(app)

    from . import api

    api.register(app)
    return app
