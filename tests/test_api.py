"""The token API over real HTTP (Gunicorn), against the database under test and real Redis."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.client import sha256

DATA = Path(os.environ["PROCTOR_DATA_DIR"])


def error_code(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


# --- exams ------------------------------------------------------------------------------------


def test_create_and_read_exam(api):
    exam = api.create_exam(title="Physics", roster=["s1", {"student_id": "s2", "name": "Li Wei"}])
    assert exam["status"] == "active" and exam["title"] == "Physics"
    assert {"id", "title", "starts_at", "ends_at", "status"} <= set(exam)

    listed = api.get("/api/exams", "teacher").json()["exams"]
    assert exam["id"] in [e["id"] for e in listed]

    detail = api.get(f"/api/exams/{exam['id']}", "teacher").json()
    assert detail["roster_size"] == 2
    assert detail["sessions"]["total"] == 0


def test_future_exam_is_pending(api):
    assert api.create_exam(start_in_s=3600)["status"] == "pending"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": "x"},
        {"title": "", "starts_at": "2030-01-01T10:00:00+00:00", "ends_at": "2030-01-01T11:00:00+00:00"},
        {"title": "x", "starts_at": "2030-01-01T10:00:00", "ends_at": "2030-01-01T11:00:00"},  # no offset
        {"title": "x", "starts_at": "yesterday", "ends_at": "2030-01-01T11:00:00+00:00"},
        {"title": "x", "starts_at": "2030-01-01T11:00:00+00:00", "ends_at": "2030-01-01T10:00:00+00:00"},
        {"title": "x", "starts_at": "2030-01-01T10:00:00+00:00", "ends_at": "2030-01-01T11:00:00+00:00", "roster": "s1"},
        {"title": "x", "starts_at": "2030-01-01T10:00:00+00:00", "ends_at": "2030-01-01T11:00:00+00:00", "roster": [""]},
        {"title": "x" * 201, "starts_at": "2030-01-01T10:00:00+00:00", "ends_at": "2030-01-01T11:00:00+00:00"},
        [1, 2],
        "just a string",
    ],
)
def test_bad_exam_bodies_are_400_and_create_nothing(api, body):
    before = len(api.get("/api/exams", "teacher").json()["exams"])
    r = api.post("/api/exams", "teacher", json=body)
    assert r.status_code == 400, r.text
    assert error_code(r) in {"invalid_body", "invalid_json"}
    assert len(api.get("/api/exams", "teacher").json()["exams"]) == before


def test_malformed_json_is_400(api):
    r = api.post("/api/exams", "teacher", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_unknown_exam_is_404(api):
    assert api.get("/api/exams/999999", "teacher").status_code == 404
    r = api.post("/api/exams/999999/join", json={"student_id": "s1"})
    assert r.status_code == 404 and error_code(r) == "not_found"


# --- auth -------------------------------------------------------------------------------------


def test_teacher_calls_need_the_admin_token(api):
    assert api.get("/api/exams").status_code == 401
    assert api.get("/api/exams", "wrong-token").status_code == 401
    r = api.get("/api/exams", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"


def test_token_in_query_string_is_refused(api):
    token = api.admin["Authorization"].split()[1]
    assert api.get(f"/api/exams?token={token}").status_code == 401
    assert api.get(f"/api/exams?access_token={token}", "teacher").status_code == 401


def test_student_token_cannot_do_teacher_calls_or_other_sessions(api):
    exam = api.create_exam()
    a, b = api.join(exam["id"], "alice"), api.join(exam["id"], "bob")
    assert api.get("/api/exams", a["token"]).status_code == 403
    assert api.get(f"/api/sessions/{b['session_id']}", a["token"]).status_code == 403
    assert api.post(f"/api/sessions/{b['session_id']}/heartbeat", a["token"]).status_code == 403
    r = api.upload({"session_id": b["session_id"], "token": a["token"]}, 0, b"x")
    assert r.status_code == 403
    assert api.session(b)["segments"] == 0


# --- join -------------------------------------------------------------------------------------


def test_join_roster_and_rejoin(api):
    exam = api.create_exam(roster=["s1"])
    r = api.post(f"/api/exams/{exam['id']}/join", json={"student_id": "intruder"})
    assert r.status_code == 403 and error_code(r) == "not_on_roster"

    first = api.join(exam["id"], "s1")
    assert first["next_seq"] == 0 and first["heartbeat_interval_s"] > 0
    assert first["max_segment_bytes"] == 64 * 1024 * 1024
    assert api.upload(first, 0, b"seg0").status_code == 201

    again = api.join(exam["id"], "s1")  # the client crashed and came back
    assert again["session_id"] == first["session_id"]
    assert again["token"] != first["token"] and again["next_seq"] == 1
    assert api.post(f"/api/sessions/{first['session_id']}/heartbeat", first["token"]).status_code == 401
    assert api.post(f"/api/sessions/{again['session_id']}/heartbeat", again["token"]).status_code == 200


def test_join_completed_exam_is_409(api):
    exam = api.create_exam(start_in_s=-7200, length_s=3600)
    assert exam["status"] == "completed"
    r = api.post(f"/api/exams/{exam['id']}/join", json={"student_id": "late"})
    assert r.status_code == 409 and error_code(r) == "exam_completed"


@pytest.mark.parametrize("body", [{}, {"student_id": ""}, {"student_id": "a b"}, {"student_id": 5}, {"student_id": "x" * 65}])
def test_join_bad_body(api, body):
    exam = api.create_exam()
    r = api.post(f"/api/exams/{exam['id']}/join", json=body)
    assert r.status_code == 400
    assert api.get(f"/api/exams/{exam['id']}", "teacher").json()["sessions"]["total"] == 0


# --- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "hb")
    r = api.post(f"/api/sessions/{s['session_id']}/heartbeat", s["token"])
    assert r.status_code == 200 and r.json()["presence"] == "online" and r.json()["server_time"]
    view = api.session(s)
    assert view["presence"] == "online" and view["last_heartbeat_at"]
    assert api.post(f"/api/sessions/{s['session_id']}/heartbeat").status_code == 401


# --- segments -----------------------------------------------------------------------------------


def test_segment_upload_idempotent_retry_and_conflict(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "up")
    data = os.urandom(300_000)
    r = api.upload(s, 0, data, **{"X-Content-SHA256": sha256(data), "X-Captured-At": "1700000000000"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == sha256(data) and r.json()["size"] == len(data)
    assert r.json()["captured_at"].startswith("2023-11-14T22:13:20")

    assert api.upload(s, 0, data).status_code == 200  # a retry of the same bytes
    r = api.upload(s, 0, b"other bytes")
    assert r.status_code == 409 and error_code(r) == "segment_conflict"

    stored = DATA / "segments" / str(s["session_id"]) / "000000.mp4"
    assert stored.read_bytes() == data  # the conflicting upload changed nothing
    assert [p.name for p in stored.parent.iterdir()] == ["000000.mp4"]  # no temporary files left


def test_missing_and_next_seq(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "gaps")
    for seq in (0, 1, 4, 2):
        assert api.upload(s, seq, f"seg{seq}".encode(), "video/webm").status_code == 201
    view = api.session(s)
    assert view["next_seq"] == 5 and view["missing"] == [3] and view["segments"] == 4
    assert view["state"] == "active"
    assert api.join(exam["id"], "gaps")["next_seq"] == 5


@pytest.mark.parametrize(
    "seq,headers,status,code",
    [
        ("-1", {}, 400, "invalid_seq"),
        ("1000000", {}, 400, "invalid_seq"),
        ("abc", {}, 400, "invalid_seq"),
        ("0", {"Content-Type": "image/png"}, 415, "unsupported_media_type"),
        ("0", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("0", {"X-Content-SHA256": "0" * 64}, 400, "checksum_mismatch"),
        ("0", {"X-Content-SHA256": "nothex"}, 400, "invalid_header"),
        ("0", {"X-Captured-At": "yesterday"}, 400, "invalid_header"),
    ],
)
def test_bad_uploads_store_nothing(api, seq, headers, status, code):
    exam = api.create_exam()
    s = api.join(exam["id"], "bad")
    h = {"Content-Type": "video/mp4", **headers}
    r = api.put(f"/api/sessions/{s['session_id']}/segments/{seq}", s["token"], data=b"payload", headers=h)
    assert r.status_code == status, r.text
    assert error_code(r) == code
    assert api.session(s)["segments"] == 0
    seg_dir = DATA / "segments" / str(s["session_id"])
    assert not seg_dir.exists() or list(seg_dir.iterdir()) == []


def _raw_request(server: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _upload_head(s: dict, *headers: str) -> str:
    lines = [
        f"PUT /api/sessions/{s['session_id']}/segments/0 HTTP/1.1", "Host: x",
        f"Authorization: Bearer {s['token']}", "Content-Type: video/mp4", *headers, "Connection: close",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_upload_without_length_is_411(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "chunked")
    head = _upload_head(s, "Transfer-Encoding: chunked")
    status, _ = _raw_request(server, head, b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 411
    assert api.session(s)["segments"] == 0


def test_oversized_upload_is_413_before_reading(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "big")
    head = _upload_head(s, f"Content-Length: {64 * 1024 * 1024 + 1}")
    status, _ = _raw_request(server, head, b"x" * 1000)
    assert status == 413
    assert api.session(s)["segments"] == 0


def test_cut_upload_leaves_nothing(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "cut")
    head = _upload_head(s, "Content-Length: 100000")
    _raw_request(server, head, b"x" * 40_000)  # the client dies mid-body

    def nothing_stored():
        seg_dir = DATA / "segments" / str(s["session_id"])
        return api.session(s)["segments"] == 0 and (not seg_dir.exists() or not list(seg_dir.iterdir()))

    assert nothing_stored()
    # The seat retries with the whole body and succeeds.
    assert api.upload(s, 0, b"y" * 100_000).status_code == 201


# --- finish and states --------------------------------------------------------------------------


def test_finish_records_and_blocks_later_seqs(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "fin")
    for seq in range(3):
        api.upload(s, seq, f"segment {seq}".encode())
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 3})
    assert r.status_code == 202, r.text
    view = api.session(s)
    assert view["state"] in {"finished", "merging", "merged", "partial", "failed"}
    assert view["recording"] is not None

    # A late segment within last_seq is still taken; beyond it is refused.
    if view["state"] == "finished":
        assert api.upload(s, 3, b"late").status_code == 201
    r = api.upload(s, 4, b"beyond")
    assert r.status_code == 409

    # Finishing again with a different last_seq conflicts; the same one is harmless.
    assert api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 9}).status_code == 409


@pytest.mark.parametrize("body", [{"last_seq": -1}, {"last_seq": "3"}, {"last_seq": 1_000_000}, [3]])
def test_finish_bad_body(api, body):
    exam = api.create_exam()
    s = api.join(exam["id"], "finbad")
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json=body)
    assert r.status_code == 400
    assert api.session(s)["state"] == "active"


def test_finish_below_stored_seq_is_409(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "finlow")
    api.upload(s, 5, b"five")
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 2})
    assert r.status_code == 409 and error_code(r) == "last_seq_too_low"
    assert api.session(s)["state"] == "active"


def test_end_exam_finishes_active_sessions(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "ender")
    api.upload(s, 0, b"zero")
    r = api.post(f"/api/exams/{exam['id']}/end", "teacher")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    view = api.session(s)
    assert view["state"] != "active" and view["last_seq"] == 0
    roster = api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"]
    assert [row["student_id"] for row in roster] == ["ender"]
    assert roster[0]["segments"] == 1 and roster[0]["next_seq"] == 1


def test_recording_before_merge_is_404(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "norec")
    r = api.get(f"/api/sessions/{s['session_id']}/recording", s["token"])
    assert r.status_code == 404


# --- health -------------------------------------------------------------------------------------


def test_health_names_every_dependency(api):
    r = api.get("/health")
    body = r.json()
    assert set(body["checks"]) == {"database", "redis", "storage", "ffmpeg"}
    assert r.status_code == 200 and body["down"] == [], body


def test_unknown_route_is_json_404(api):
    r = api.get("/api/nope")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = api.http.delete(api.url("/api/exams"), headers=api.admin)
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_crash_leftover_file_is_replaced_and_concurrent_upload_waits(api):
    """A file without a row (a crash between link and insert) is overwritten by the next upload;
    while another upload of the same seq is recording itself, a second one is told to retry."""
    from proctor import locks

    exam = api.create_exam()
    s = api.join(exam["id"], "leftover")
    seg_dir = DATA / "segments" / str(s["session_id"])
    seg_dir.mkdir(parents=True, exist_ok=True)
    (seg_dir / "000000.mp4").write_bytes(b"half of an old upload")
    assert api.upload(s, 0, b"the real segment").status_code == 201
    assert (seg_dir / "000000.mp4").read_bytes() == b"the real segment"

    with locks.held(f"segment:{s['session_id']}:1", 30) as taken:
        assert taken
        r = api.upload(s, 1, b"racing")
        assert r.status_code == 409 and error_code(r) == "upload_in_progress"
    assert api.session(s)["segments"] == 1
    assert sorted(p.name for p in seg_dir.iterdir()) == ["000000.mp4"]
    assert api.upload(s, 1, b"racing").status_code == 201
