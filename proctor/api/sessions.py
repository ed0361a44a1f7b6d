"""Student calls on their session (heartbeat, segments, finish) and reading it back."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import Blueprint, jsonify, request, send_file

from .. import metrics, presence, segments, sessions, storage
from ..config import settings
from ..errors import BadRequest, ProctorError, UnsupportedMediaType
from .auth import require_session, require_teacher, student_token_hash
from .uploads import body_length, captured_at_header, drain
from .validation import Finish, parse

bp = Blueprint("sessions", __name__, url_prefix="/api/sessions")

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@bp.post("/<id:session_id>/heartbeat")
def heartbeat(session_id: int):
    # One Redis round trip: the token's cache entry is checked in the heartbeat's own script.
    token_hash = student_token_hash()
    tracked = presence.heartbeat(session_id, token_hash) if token_hash else None
    if tracked is None:  # not in the token cache (or not the student's): authenticate the long way
        require_session(session_id, teacher_ok=False)
        tracked = presence.heartbeat(session_id)
    metrics.HEARTBEATS.inc()
    return jsonify(
        {
            "presence": "online" if tracked else "offline",
            "tracked": tracked,
            "server_time": datetime.now(timezone.utc).isoformat(),
        }
    )


@bp.put("/<id:session_id>/segments/<seq>")
def put_segment(session_id: int, seq: str):
    require_session(session_id, teacher_ok=False)
    length = body_length(settings().max_segment_bytes, "segment")
    # From here the body is known to be bounded: a refusal reads the rest, so the student's client
    # gets the answer rather than a reset connection.
    try:
        upload = segments.Upload(
            seq=_seq(seq),
            media_type=_media_type(),
            length=length,
            sha256=_claimed_sha256(),
            captured_at=captured_at_header(),
        )
        created, info = segments.store_segment(session_id, upload, request.stream)
    except ProctorError:
        drain(request.stream)
        raise
    if created:
        metrics.UPLOAD_BYTES.inc(upload.length)
    info["next_seq"] = segments.next_seq(session_id)
    return jsonify(info), 201 if created else 200


def _seq(raw: str) -> int:
    # ASCII digits only: "٣" or "３" are digits to Python's int() and would land on seq 3.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or int(raw) > segments.MAX_SEQ:
        raise BadRequest(f"seq must be an integer from 0 to {segments.MAX_SEQ}", code="invalid_seq")
    return int(raw)


def _media_type() -> str:
    media_type = (request.mimetype or "").lower()
    if media_type not in storage.EXTENSIONS:
        allowed = ", ".join(storage.EXTENSIONS)
        raise UnsupportedMediaType(f"Content-Type must be one of {allowed}")
    return media_type


def _claimed_sha256() -> str | None:
    raw = request.headers.get("X-Content-SHA256")
    if raw is None:
        return None
    if not SHA256_HEX.match(raw.strip()):
        raise BadRequest("X-Content-SHA256 must be 64 hex digits", code="invalid_header")
    return raw.strip().lower()


@bp.get("/<id:session_id>")
def get_session(session_id: int):
    require_session(session_id, teacher_ok=True)
    return jsonify(sessions.session_view(session_id))


@bp.post("/<id:session_id>/finish")
def finish(session_id: int):
    require_session(session_id, teacher_ok=True)
    body = parse(Finish, allow_empty=True)
    if body.last_seq is not None:  # every seq below it would be a gap the merge waits for and reports
        segments.check_seq_ahead(session_id, 0, body.last_seq)
    return jsonify(sessions.finish(session_id, body.last_seq, client_addr=request.remote_addr)), 202


@bp.post("/<id:session_id>/merge")
def merge_again(session_id: int):
    require_teacher()
    sessions.requeue_merge(session_id)
    return jsonify(sessions.session_view(session_id)), 202


@bp.post("/<id:session_id>/release")
def release(session_id: int):
    """Let the other front door (a desktop seat, a browser) take the session at its next login."""
    require_teacher()
    return jsonify(sessions.release(session_id))


@bp.get("/<id:session_id>/recording")
def recording(session_id: int):
    require_session(session_id, teacher_ok=True)
    path, media_type, sha256 = sessions.recording_file(session_id)
    return send_file(path, mimetype=media_type, conditional=True, etag=sha256, max_age=0)
