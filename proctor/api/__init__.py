"""The token API's blueprints, and the legacy seats' protocol (``legacy``, issue 5)."""
from flask import Flask

from . import admin, errors, exams, health, legacy, ops, sessions


def register(app: Flask) -> None:
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(exams.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    legacy.register(app)
