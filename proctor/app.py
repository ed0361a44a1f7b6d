"""The application factory: ``create_app(settings)`` builds the Flask app on the given settings
(default: the environment's), as ``server.py`` (Gunicorn) and the in-process tests do."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api, config, web
from .config import Settings
from .logs import configure_logging, install_request_ids


def create_app(settings: Settings | None = None) -> Flask:
    cfg = config.configure(settings) if settings is not None else config.settings()
    configure_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # segment size is checked per route, before reading
    app.config["PROCTOR_SETTINGS"] = cfg
    app.json.sort_keys = False
    cfg.segments_dir.mkdir(parents=True, exist_ok=True)
    cfg.recordings_dir.mkdir(parents=True, exist_ok=True)

    if cfg.trusted_proxies > 0:
        # Behind N reverse proxies the seat's address is in X-Forwarded-For (or, from a proxy that
        # sets only that, X-Real-IP); without this every seat would share the proxy's address
        # (legacy seat binding and rate limits need it).
        app.wsgi_app = _real_ip_as_forwarded_for(
            ProxyFix(app.wsgi_app, x_for=cfg.trusted_proxies, x_proto=cfg.trusted_proxies)
        )
    install_request_ids(app)
    api.register(app)
    web.register(app)
    return app


def _real_ip_as_forwarded_for(wsgi_app):
    """A proxy that sends ``X-Real-IP`` but no ``X-Forwarded-For`` is read like one that does."""

    def app(environ, start_response):
        if "HTTP_X_FORWARDED_FOR" not in environ and "HTTP_X_REAL_IP" in environ:
            environ["HTTP_X_FORWARDED_FOR"] = environ["HTTP_X_REAL_IP"]
        return wsgi_app(environ, start_response)

    return app
