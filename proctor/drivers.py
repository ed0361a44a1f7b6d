"""Browser drivers for the desktop seats (``GET /driver/<name>``).

After a browser update a seat asks for the driver matching its browser's major version, e.g.
``chromedriver_143.exe``, and saves it beside itself. The exam office puts the files in
``PROCTOR_DRIVER_DIR``; nothing is downloaded at run time. Only names of that form are served, and
only files directly in that directory, so no request can reach another path.
"""
from __future__ import annotations

import re
from pathlib import Path

from .config import settings
from .errors import NotFound

DRIVER_NAME = re.compile(r"^(chromedriver|msedgedriver)_\d{1,4}(\.exe)?$")


def driver_file(name: str) -> Path:
    """The driver file called ``name``; NotFound for any other name or a file not there."""
    if not DRIVER_NAME.match(name):
        raise NotFound(f"no driver called {name[:80]!r}: names are chromedriver_<major>[.exe] or msedgedriver_<major>[.exe]")
    directory = settings().driver_dir
    path = directory / name
    if path.parent != directory or not path.is_file():
        raise NotFound(f"the server has no {name}; the exam office puts drivers in PROCTOR_DRIVER_DIR")
    return path
