"""Ordering folders of segments that come from elsewhere (the command line's merge)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

_TIMESTAMP = re.compile(
    r"(?<!\d)((?:19|20)\d\d)[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])[T_. -]?"
    r"([01]\d|2[0-3])[-_.:h]?([0-5]\d)[-_.:m]?([0-5]\d)(?:[.,_-]?(\d{1,6}))?(?!\d)"
)
_DIGITS = re.compile(r"\d+")
_TEMP_SUFFIXES = {".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp"}


def order_directory(directory: Path) -> list[Path]:
    """The segment files of ``directory`` in recording order.

    Sequence first, timestamp as fallback, decided for the whole folder: if every file name
    carries a distinct sequence number (``seg_12.mp4``, ``0003.webm``) that order is used; else
    if every name carries a timestamp (``20241105_101502.mp4``, ``2024-11-05T10-15-02.webm``)
    that one; else modification time. Hidden files (including our ``.tmp-`` files), editor and
    download leftovers, directories and symlinks are ignored.
    """
    files = [p for p in Path(directory).iterdir() if _is_candidate(p)]
    names = {p: p.stem for p in files}
    stamps = {p: _timestamp(names[p]) for p in files}
    seqs = _sequence_numbers({p: _TIMESTAMP.sub(" ", names[p]) for p in files})
    if all(seqs.get(p) is not None for p in files) and len(set(seqs.values())) == len(files):
        return sorted(files, key=lambda p: (seqs[p], p.name))
    if all(stamps[p] is not None for p in files):
        return sorted(files, key=lambda p: (stamps[p], p.name))
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith((".", "~")) or name.endswith("~"):
        return False
    if path.suffix.lower() in _TEMP_SUFFIXES:
        return False
    return path.is_file() and not path.is_symlink()


def _timestamp(stem: str) -> datetime | None:
    match = _TIMESTAMP.search(stem)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int((fraction or "0").ljust(6, "0")[:6]))
    except ValueError:
        return None


def _sequence_numbers(stems: dict[Path, str]) -> dict[Path, int | None]:
    """The counter in each name: the number that varies across the folder (``seg_3_720p``)."""
    numbers = {p: [int(d) for d in _DIGITS.findall(s)] for p, s in stems.items()}
    counts = {len(n) for n in numbers.values()}
    if len(counts) == 1 and (count := counts.pop()) > 0:
        varying = [i for i in range(count) if len({n[i] for n in numbers.values()}) > 1]
        index = varying[-1] if varying else count - 1
        return {p: n[index] for p, n in numbers.items()}
    return {p: (n[-1] if n else None) for p, n in numbers.items()}
