"""Files on disk: where segments and recordings live and how an upload reaches its place.

The server names every file itself. An upload streams into a temporary file in the destination
directory while its SHA-256 is computed, is fsynced, and only then linked into place, so a cut
upload leaves nothing visible and memory per upload stays at one chunk.

Power loss: a file is durable once its data and its directory entry are. So the data is fsynced
before the link or rename that publishes it, the directory after it, and a directory this module
creates (a session's first segment) has its parent fsynced too, all before the upload is answered
or the merge recorded. What was answered 201, and a recording marked merged, survives a power cut.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import blocking
from .config import settings
from .errors import BadRequest, InsufficientStorage, TooLarge

CHUNK = 256 * 1024
DISCARDS_IN_FLIGHT = 8
TMP_PREFIX = ".tmp-"

EXTENSIONS = {"video/webm": "webm", "video/mp4": "mp4", "video/mp2t": "ts"}


class IncompleteUpload(BadRequest):
    """The body ended before Content-Length bytes arrived (the client was cut off)."""

    code = "incomplete_body"


@dataclass(frozen=True)
class StagedFile:
    path: Path
    size: int
    sha256: str


def check_size(size: int, limit: int, what: str) -> int:
    """The one size rule of every upload (segment, recording, screenshot, import file)."""
    if size > limit:
        raise TooLarge(f"a {what} may be at most {limit} bytes")
    if size == 0:
        raise BadRequest(f"the {what} is empty", code="empty_body")
    return size


def segment_dir(session_id: int) -> Path:
    return settings().segments_dir / str(session_id)


def segment_path(session_id: int, run: int, seq: int, media_type: str) -> Path:
    """``000042.webm`` for the first run, ``r2-000042.webm`` for a seat's later runs."""
    prefix = f"r{run}-" if run else ""
    return segment_dir(session_id) / f"{prefix}{seq:06d}.{EXTENSIONS[media_type]}"


def recording_base(session_id: int) -> Path:
    """Where a session's merged recording goes (the merge picks the suffix from the container)."""
    return settings().recordings_dir / f"session-{session_id}"


def sync(fd: int) -> None:
    """fsync, without stalling the other connections of an event-loop web worker."""
    blocking.run(os.fsync, fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        sync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` whose new directories survive a power cut: each one's parent is fsynced
    (also when a concurrent upload created it first: its entry may not be on disk yet)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            pass
        fsync_dir(new.parent)


def stage_stream(stream: BinaryIO, directory: Path, length: int) -> StagedFile:
    """Copy exactly ``length`` bytes of ``stream`` into a fsynced temporary file in ``directory``."""
    make_dirs(directory)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    digest = hashlib.sha256()
    remaining = length
    try:
        with os.fdopen(fd, "wb") as out:
            while remaining > 0:
                chunk = stream.read(min(CHUNK, remaining))
                if not chunk:
                    raise IncompleteUpload(
                        f"body ended {remaining} bytes short of Content-Length; nothing stored"
                    )
                digest.update(chunk)
                out.write(chunk)
                remaining -= len(chunk)
            out.flush()
            sync(out.fileno())
    except BaseException as err:
        discard(Path(name))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            # The client keeps the segment and retries; nothing half-written stays behind.
            raise InsufficientStorage("the server's disk is full; nothing stored, retry later") from err
        raise
    return StagedFile(Path(name), length, digest.hexdigest())


def publish(staged: StagedFile, final: Path) -> bool:
    """Give the staged file its final name unless one is already there.

    Returns False (and leaves both files alone) when ``final`` exists; a hard link fails atomically
    in that case, where a rename would silently replace the other upload.
    """
    try:
        os.link(staged.path, final)
    except FileExistsError:
        return False
    discard(staged.path)
    fsync_dir(final.parent)
    return True


def replace(staged: StagedFile, final: Path) -> None:
    os.replace(staged.path, final)
    fsync_dir(final.parent)


def stage_file(path: Path) -> StagedFile:
    """Fsync a file written in its destination directory and describe it, ready for ``replace``.

    For files the server writes itself (a merged recording) rather than receives as a stream.
    """
    with open(path, "rb") as fh:
        sync(fh.fileno())
        size = os.fstat(fh.fileno()).st_size
    return StagedFile(path, size, sha256_file(path))


def discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def discard_all(paths: list[Path]) -> None:
    """``discard`` each path, several at a time: an unlink mostly waits for the file system's
    journal (0.5-2 ms a file on the benchmark machine), a wait several unlinks in flight share. A
    merge's 60 segments went from 30-120 ms to 10-25 ms."""
    with ThreadPoolExecutor(max_workers=DISCARDS_IN_FLIGHT) as pool:
        list(pool.map(discard, paths))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable() -> None:
    """Raise OSError unless a file can be written and synced in the data directory."""
    directory = settings().data_dir
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=TMP_PREFIX, dir=directory) as fh:
        fh.write(b"ok")
        fh.flush()
        sync(fh.fileno())
