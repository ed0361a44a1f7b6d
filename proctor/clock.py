"""Time: "now" for records (aware UTC), and the exam office's local time.

The database keeps aware UTC. The desktop seats speak naive local time ``YYYY-MM-DD HH:MM:SS`` in
the exam office's zone (``PROCTOR_TIMEZONE``, default the host's): their client computes
``datetime.fromisoformat(end_time) - datetime.now()``, which raises on a time with an offset. They
send their timestamps in whatever form their platform wrote; a naive one is read in that zone, and
so is a naive time a teacher gives.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from .config import settings
from .errors import BadRequest


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


EPOCH = re.compile(r"^[0-9]{9,13}(\.[0-9]+)?$")  # ASCII: float() reads "٣" as 3 too
COMPACT_FORMATS = ("%Y%m%d_%H%M%S", "%Y%m%d%H%M%S", "%Y-%m-%d_%H-%M-%S", "%Y/%m/%d %H:%M:%S")
SEAT_FORMAT = "%Y-%m-%d %H:%M:%S"


def server_time() -> str:
    """Now, as the seats expect it."""
    return seat_time(utcnow())


def seat_time(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in the exam office's zone, with no offset."""
    return moment.astimezone(settings().timezone).strftime(SEAT_FORMAT)


# The times proctor keeps: far enough inside datetime's years that a grace or a retention added to
# one cannot overflow, and inside what MariaDB's DATETIME stores.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def in_range(moment: datetime) -> datetime:
    """An aware time as UTC; ValueError when it is outside EARLIEST..LATEST (a year-1 time at
    +14:00 is not even a year in UTC)."""
    try:
        utc = moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return utc


def from_epoch_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC time; ValueError outside EARLIEST..LATEST."""
    if not 0 <= ms <= LATEST.timestamp() * 1000:
        raise ValueError(f"must be epoch milliseconds from 0 to {int(LATEST.timestamp() * 1000)}")
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def in_office_zone(moment: datetime) -> datetime:
    """An aware time: a naive one is read as the exam office's local time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=settings().timezone)
    return moment


def parse_time(raw: str | None) -> datetime | None:
    """A seat's timestamp, read liberally: ISO 8601 with or without an offset (none: the exam
    office's local time), a space instead of ``T``, ``Z``, epoch seconds or milliseconds, or a
    compact form."""
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    try:
        if EPOCH.match(text):
            value = float(text)
            return from_epoch_ms(round(value if value > 1e11 else value * 1000))
        moment = _parse_text_time(text)
        if moment is None:
            raise ValueError("is not a date and time")
        return in_range(in_office_zone(moment))
    except ValueError as err:
        raise BadRequest(f"timestamp {text[:40]!r} {err}", code="invalid_timestamp") from None


def _parse_text_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        pass
    for fmt in COMPACT_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None
