"""What a file is, by its first bytes: the one table of signatures every upload path uses.

A client's Content-Type and file name are claims; the first bytes are evidence. Segments,
legacy recordings, screenshots and the merge engine all ask this module.
"""
from __future__ import annotations

HEAD_BYTES = 12

EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska / WebM
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# The boxes an MP4 may begin with (plain, fragmented or with a leading free/skip box).
MP4_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"moof", b"free", b"skip", b"wide", b"mdat"}

VIDEO_TYPES = ("video/mp4", "video/webm")
IMAGE_TYPES = ("image/png", "image/jpeg")


def sniff(head: bytes) -> str | None:
    """The media type the first bytes say, or None when they match no known signature."""
    if head.startswith(PNG_MAGIC):
        return "image/png"
    if head.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if head.startswith(EBML_MAGIC):
        return "video/webm"
    if len(head) >= 8 and head[4:8] in MP4_FIRST_BOXES:
        return "video/mp4"
    return None


def starts_container(head: bytes) -> bool:
    """Does this file begin a container (a WebM header or an MP4 ``ftyp``)?

    A chunk that does not may be the middle of a byte stream whose header came in an earlier one.
    """
    return head.startswith(EBML_MAGIC) or head[4:8] == b"ftyp"


def sniff_file(path) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))
