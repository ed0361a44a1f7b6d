"""The HTTP front doors: the token API's blueprints, operator calls, and the desktop seats'
protocol (``legacy``), each rendering domain errors in its own shape."""
from flask import Flask

from . import admin, converters, errors, exams, headers, health, legacy, limits, metrics, openapi, ops, sessions


def register(app: Flask) -> None:
    app.url_map.converters["id"] = converters.IdConverter
    errors.register(app)
    headers.install(app)
    metrics.install(app)
    limits.install(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(exams.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    legacy.register(app)
    app.register_blueprint(openapi.bp)
