"""The token API's blueprints."""
from flask import Flask

from . import errors, exams, health, ops, sessions


def register(app: Flask) -> None:
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(exams.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(ops.bp)
