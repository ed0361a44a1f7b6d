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


TS_SYNC = 0x47  # every MPEG-TS packet begins with it
# Enough of a body to tell text (an HTML page, JSON, a script) from binary media.
TEXT_PROBE_BYTES = 512
SEGMENT_TYPES = ("video/mp4", "video/webm", "video/mp2t")


def segment_matches(head: bytes, media_type: str) -> bool:
    """Could a segment beginning with ``head`` be of ``media_type``?

    A segment that starts a container must start the one its type says. One that starts none may
    be a time-sliced chunk of a byte stream (the merge joins it to the chunk before it), so it is
    taken unless it is text: a page or a script sent as video is not a recording.
    """
    if not head or looks_like_text(head):
        return False
    if media_type == "video/mp2t":
        return head[0] == TS_SYNC
    found = sniff(head)
    return found is None or found == media_type


def looks_like_text(head: bytes) -> bool:
    """UTF-8 text without control characters (a last character cut short is allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3 or err.reason != "unexpected end of data":
            return False
        text = head[: err.start].decode("utf-8")
    return all(ch >= " " or ch in "\t\n\r\f" for ch in text)


def starts_container(head: bytes) -> bool:
    """Does this file begin a container (a WebM header or an MP4 ``ftyp``)?

    A chunk that does not may be the middle of a byte stream whose header came in an earlier one.
    """
    return head.startswith(EBML_MAGIC) or head[4:8] == b"ftyp"


def sniff_file(path) -> str | None:
    return sniff(read_head(path, HEAD_BYTES))


def read_head(path, n: int = TEXT_PROBE_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)
