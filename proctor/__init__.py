"""proctor: a self-hosted backend for screen-recorded online exams."""
from __future__ import annotations

from flask import Flask

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

    install_request_ids(app)
    metrics.install(app)

    from . import api

    api.register(app)
    return app
