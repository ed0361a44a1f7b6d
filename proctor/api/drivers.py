"""``GET /driver/<name>``: a browser driver for a desktop seat, as the original server served it."""
from __future__ import annotations

from flask import Blueprint, send_file

from .. import drivers

bp = Blueprint("drivers", __name__)


@bp.get("/driver/<name>")
def driver(name: str):
    # A download, never something a browser would render or run.
    return send_file(drivers.driver_file(name), mimetype="application/octet-stream", as_attachment=True,
                     download_name=name, conditional=True, max_age=0)
