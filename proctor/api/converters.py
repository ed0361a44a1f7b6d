"""URL parts that name a row: ASCII digits within the database's integer range, else 404.

Flask's ``int`` converter takes any length, so ``/api/exams/99999999999999999999999`` reached the
database and overflowed there (a 500); an id past 2**31 - 1 can name no row.
"""
from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """``<id:name>``: 1 to 2**31 - 1, written in ASCII digits without a sign or leading zeros."""

    regex = r"[1-9][0-9]{0,9}"

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)
