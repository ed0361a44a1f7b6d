"""The token API: in-process (Flask's test client) for validation, permissions and error shapes;
over real Gunicorn where the HTTP server is the point (a missing or lying Content-Length, a body cut
short). Both against the database under test and real Redis."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from tests.helpers import ADMIN_TOKEN, DATA, Api, AppTransport, error_code, png_image, raw_request, sha256, silence, unique

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


def test_a_time_without_offset_is_the_offices_local_time(api, settings_changed):
    from zoneinfo import ZoneInfo

    settings_changed(timezone=ZoneInfo("Asia/Shanghai"))  # UTC+8, no daylight saving
    r = api.post("/api/exams", "teacher", json={"title": "naive", "starts_at": "2030-01-01T10:00:00",
                                                "ends_at": "2030-01-01T11:00:00+00:00"})
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["starts_at"]) == datetime(2030, 1, 1, 2, 0, tzinfo=timezone.utc)
    assert datetime.fromisoformat(r.json()["ends_at"]) == datetime(2030, 1, 1, 11, 0, tzinfo=timezone.utc)


def test_malformed_json_is_400(api):
    r = api.post("/api/exams", "teacher", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_unknown_exam_is_404(api):
    assert api.get("/api/exams/999999", "teacher").status_code == 404
    r = api.post("/api/exams/999999/join", json={"student_id": "s1"})
    assert r.status_code == 404 and error_code(r) == "not_found"


# --- who may call what ----------------------------------------------------------------------------
#
# Every call on a session, by every kind of caller. A refused call answers 401 (no or a bad token,
# or a token in the URL, where access logs keep it) or 403 (a valid token without the right) in the
# token API's error shape, and changes nothing; an allowed one answers its documented status.

OWNER, TEACHER = "owner", "teacher"
SESSION_CALLS = {
    # name: (method, path below /api/sessions/<sid>, request, who may, the allowed answer)
    "heartbeat": ("POST", "/heartbeat", {}, {OWNER}, 200),
    "upload": ("PUT", "/segments/0", {"data": b"\0segment", "headers": {"Content-Type": "video/mp4"}}, {OWNER}, 201),
    "read": ("GET", "", {}, {OWNER, TEACHER}, 200),
    "finish": ("POST", "/finish", {"json": {}}, {OWNER, TEACHER}, 202),
    "requeue": ("POST", "/merge", {}, {TEACHER}, 409),  # allowed, but an active session is not mergeable
    "recording": ("GET", "/recording", {}, {OWNER, TEACHER}, 404),  # allowed, nothing merged yet
    "report violation": ("POST", "/violations", {"json": {"reason": "phone"}}, {OWNER}, 201),
    "list violations": ("GET", "/violations", {}, {TEACHER}, 200),
    "screenshot": ("POST", "/screenshots", {"data": "png", "headers": {"Content-Type": "image/png"}}, {OWNER}, 201),
    "list screenshots": ("GET", "/screenshots", {}, {TEACHER}, 200),
}
CALLERS = ["nobody", "garbage", "other student", OWNER, TEACHER]


def _students(api) -> tuple[dict, dict, dict]:
    exam = api.create_exam()
    return exam, api.join(exam["id"], "owner"), api.join(exam["id"], "other")


@pytest.fixture(scope="module")
def refused_on(app):
    """One exam and two sessions for the refused calls of a module: a refused call changes nothing
    (each test checks), so they may share them."""
    return _students(Api(AppTransport(app)))


def _call(api, name: str, session: dict, token: str | None, **extra):
    method, tail, request, _, _ = SESSION_CALLS[name]
    request = {**request, **extra}
    if request.get("data") == "png":
        request["data"] = png_image()
    return api.request(method, f"/api/sessions/{session['session_id']}{tail}", token, **request)


def _untouched(api, session: dict) -> None:
    view = api.session(session)
    assert view["state"] == "active" and view["segments"] == 0 and view["recording"] is None, view
    sid = session["session_id"]
    assert api.get(f"/api/sessions/{sid}/violations", "teacher").json()["violations"] == []
    assert api.get(f"/api/sessions/{sid}/screenshots", "teacher").json()["screenshots"] == []


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name", SESSION_CALLS)
def test_session_calls_by_every_caller(api, refused_on, name, caller):
    allowed, answer = SESSION_CALLS[name][3], SESSION_CALLS[name][4]
    _, owner, other = _students(api) if caller in allowed else refused_on
    token = {"nobody": None, "garbage": "not-a-token", "other student": other["token"],
             OWNER: owner["token"], TEACHER: "teacher"}[caller]
    r = _call(api, name, owner, token)
    if caller in allowed:
        assert r.status_code == answer, r.text
        return
    expected = (403, "forbidden") if caller in {"other student", OWNER, TEACHER} else (401, "unauthorized")
    assert (r.status_code, error_code(r)) == expected, r.text
    _untouched(api, owner)


@pytest.mark.parametrize("name", SESSION_CALLS)
@pytest.mark.parametrize("param", ["token", "access_token"])
def test_a_token_in_the_query_string_is_refused_even_with_the_header(api, refused_on, name, param):
    _, owner, _ = refused_on
    token = "teacher" if SESSION_CALLS[name][3] == {TEACHER} else owner["token"]
    value = ADMIN_TOKEN if token == "teacher" else token
    r = _call(api, name, owner, token, params={param: value})
    assert r.status_code == 401 and error_code(r) == "unauthorized", r.text
    _untouched(api, owner)


TEACHER_CALLS = [
    ("GET", "/api/exams"),
    ("POST", "/api/exams"),
    ("GET", "/api/exams/{exam}"),
    ("PATCH", "/api/exams/{exam}"),
    ("DELETE", "/api/exams/{exam}"),
    ("GET", "/api/exams/{exam}/sessions"),
    ("POST", "/api/exams/{exam}/end"),
    ("GET", "/api/exams/{exam}/roster"),
    ("POST", "/api/exams/{exam}/roster"),
    ("DELETE", "/api/exams/{exam}/roster/owner"),
    ("GET", "/api/exams/{exam}/logins"),
    ("GET", "/api/exams/{exam}/violations"),
    ("GET", "/api/exams/{exam}/archives"),
    ("GET", "/api/exams/{exam}/report.csv"),
    ("GET", "/api/admin/students"),
    ("POST", "/api/admin/students"),
    ("DELETE", "/api/admin/students/owner"),
    ("POST", "/api/admin/students/import"),
    ("GET", "/api/admin/seat-config"),
    ("PUT", "/api/admin/seat-config"),
    ("GET", "/stats"),
]


@pytest.mark.parametrize("caller", ["nobody", "garbage", "basic", "student", "teacher in the query"])
@pytest.mark.parametrize("method,path", TEACHER_CALLS)
def test_teacher_calls_need_the_admin_token(api, refused_on, method, path, caller):
    exam, owner, _ = refused_on
    token = {"garbage": "wrong-token", "student": owner["token"], "teacher in the query": "teacher"}.get(caller)
    headers = {"Authorization": "Basic abc"} if caller == "basic" else {}
    # The right token, but also in the URL (where access logs keep it): refused all the same.
    params = {"access_token": ADMIN_TOKEN} if caller == "teacher in the query" else None
    creates = (method, path) == ("POST", "/api/exams")
    latest = max(e["id"] for e in api.get("/api/exams", "teacher").json()["exams"]) if creates else None
    r = api.request(method, path.format(exam=exam["id"]), token, headers=headers, params=params,
                    json={"title": "changed", "students": ["intruder"]})
    expected = (403, "forbidden") if caller == "student" else (401, "unauthorized")
    assert (r.status_code, error_code(r)) == expected, r.text
    detail = api.get(f"/api/exams/{exam['id']}", "teacher").json()
    assert detail["status"] == "active" and detail["title"] == "Exam" and detail["roster_size"] == 0
    if creates:
        assert max(e["id"] for e in api.get("/api/exams", "teacher").json()["exams"]) == latest


# --- join -------------------------------------------------------------------------------------


def test_join_roster_and_rejoin(api):
    exam = api.create_exam(roster=["s1"])
    r = api.try_join(exam["id"], "intruder")
    assert r.status_code == 403 and error_code(r) == "not_on_roster"

    first = api.join(exam["id"], "s1")
    assert first["next_seq"] == 0 and first["heartbeat_interval_s"] > 0
    assert first["max_segment_bytes"] == 64 * 1024 * 1024
    assert api.upload(first, 0, b"\0seg0").status_code == 201

    silence(first["session_id"])  # the client crashed and has been silent since
    again = api.join(exam["id"], "s1")
    assert again["session_id"] == first["session_id"]
    assert again["token"] != first["token"] and again["next_seq"] == 1
    r = api.heartbeat(first)
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    assert api.heartbeat(again).status_code == 200


def test_join_completed_exam_is_409(api):
    exam = api.create_exam(start_in_s=-7200, length_s=3600)
    assert exam["status"] == "completed"
    r = api.try_join(exam["id"], "late")
    assert r.status_code == 409 and error_code(r) == "exam_completed"


@pytest.mark.parametrize("body", [{"student_id": ""}, {"student_id": "a b"}, {"student_id": 5}, {"student_id": "x" * 65},
                                  {"entry_code": "x" * 33}, {"entry_code": 12345678}])
def test_join_bad_body(api, body):
    exam = api.create_exam()
    r = api.post(f"/api/exams/{exam['id']}/join", json={"student_id": "ok", "entry_code": api.entry_code(exam["id"]), **body})
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text
    assert api.get(f"/api/exams/{exam['id']}", "teacher").json()["sessions"]["total"] == 0


# --- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "hb")
    r = api.heartbeat(s)
    assert r.status_code == 200 and r.json()["presence"] == "online" and r.json()["server_time"]
    view = api.session(s)
    assert view["presence"] == "online" and view["last_heartbeat_at"]
    assert api.post(f"/api/sessions/{s['session_id']}/heartbeat").status_code == 401


# --- segments -----------------------------------------------------------------------------------


def segment_dir(session: dict):
    return DATA / "segments" / str(session["session_id"])


def stored_files(session: dict) -> list[str]:
    d = segment_dir(session)
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_segment_upload_idempotent_retry_and_conflict(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "up")
    data = os.urandom(300_000)
    r = api.upload(s, 0, data, **{"X-Content-SHA256": sha256(data), "X-Captured-At": "1700000000000"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == sha256(data) and r.json()["size"] == len(data)
    assert r.json()["captured_at"].startswith("2023-11-14T22:13:20")

    assert api.upload(s, 0, data).status_code == 200  # a retry of the same bytes
    r = api.upload(s, 0, b"\0other bytes")
    assert r.status_code == 409 and error_code(r) == "segment_conflict"

    assert (segment_dir(s) / "000000.mp4").read_bytes() == data  # the conflicting upload changed nothing
    assert stored_files(s) == ["000000.mp4"]  # no temporary files left


def test_missing_and_next_seq(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "gaps")
    for seq in (0, 1, 4, 2):
        assert api.upload(s, seq, f"\0seg{seq}".encode(), "video/webm").status_code == 201
    view = api.session(s)
    assert view["next_seq"] == 5 and view["missing"] == [[3, 3]] and view["segments"] == 4
    assert view["state"] == "active"
    silence(s["session_id"])
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
    r = api.put(f"/api/sessions/{s['session_id']}/segments/{seq}", s["token"], data=b"\0payload", headers=h)
    assert r.status_code == status, r.text
    assert error_code(r) == code
    assert api.session(s)["segments"] == 0
    assert stored_files(s) == []


# Over real Gunicorn: what only a real HTTP server sees (no library sends these requests).


def _upload_head(s: dict, *headers: str) -> str:
    lines = [
        f"PUT /api/sessions/{s['session_id']}/segments/0 HTTP/1.1", "Host: x",
        f"Authorization: Bearer {s['token']}", "Content-Type: video/mp4", *headers, "Connection: close",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _error_of(raw: bytes) -> str:
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_upload_without_length_is_411(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "chunked")
    head = _upload_head(s, "Transfer-Encoding: chunked")
    status, raw = raw_request(server, head, b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 411 and _error_of(raw) == "length_required"
    assert api.session(s)["segments"] == 0 and stored_files(s) == []


def test_oversized_upload_is_413_before_reading(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "big")
    head = _upload_head(s, f"Content-Length: {64 * 1024 * 1024 + 1}")
    # Only 1000 bytes of the announced 64 MiB follow: an answer at all means it was not read.
    status, raw = raw_request(server, head, b"x" * 1000)
    assert status == 413 and _error_of(raw) == "too_large"
    assert api.session(s)["segments"] == 0 and stored_files(s) == []


def test_cut_upload_leaves_nothing(api, server):
    exam = api.create_exam()
    s = api.join(exam["id"], "cut")
    head = _upload_head(s, "Content-Length: 100000")
    raw_request(server, head, b"x" * 40_000)  # the client dies mid-body; the server has answered
    assert api.session(s)["segments"] == 0 and stored_files(s) == []
    # The seat retries with the whole body and succeeds.
    assert api.upload(s, 0, b"\0" * 100_000).status_code == 201
    assert (segment_dir(s) / "000000.mp4").read_bytes() == b"\0" * 100_000


# --- finish and states --------------------------------------------------------------------------


def test_finish_records_and_still_takes_late_segments(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "fin")
    for seq in range(3):
        api.upload(s, seq, f"\0segment {seq}".encode())
    api.finish(s, last_seq=3)
    # Seq 3 is missing: a merge waits the grace period (seconds) for it, the session stays finished.
    view = api.session(s)
    assert view["state"] == "finished" and view["last_seq"] == 3, view
    assert view["recording"]["status"] in {"queued", "waiting"}, view["recording"]

    # Finishing again with the same last_seq is harmless; with another one it conflicts.
    api.finish(s, last_seq=3)
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 9})
    assert r.status_code == 409 and error_code(r) == "session_finished"
    assert api.session(s)["last_seq"] == 3
    # A segment is never refused for arriving late, within last_seq or beyond it.
    assert api.upload(s, 3, b"\0late").status_code == 201
    assert api.upload(s, 4, b"\0later still").status_code == 201
    assert api.session(s)["segments"] == 5


@pytest.mark.parametrize(
    "body,code",
    [({"last_seq": -1}, "invalid_body"), ({"last_seq": "3"}, "invalid_body"),
     ({"last_seq": 1_000_000}, "invalid_body"), ([3], "invalid_json")],
)
def test_finish_bad_body(api, body, code):
    exam = api.create_exam()
    s = api.join(exam["id"], "finbad")
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json=body)
    assert r.status_code == 400 and error_code(r) == code, r.text
    assert api.session(s)["state"] == "active"


def test_finish_below_stored_seq_is_409(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "finlow")
    api.upload(s, 5, b"\0five")
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 2})
    assert r.status_code == 409 and error_code(r) == "last_seq_too_low"
    assert api.session(s)["state"] == "active"


def test_end_exam_closes_active_sessions_until_their_last_segment(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "ender")
    api.upload(s, 0, b"\0zero")
    r = api.post(f"/api/exams/{exam['id']}/end", "teacher")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    # The client stops recording at the end and only then sends its last (cut) segment.
    view = api.session(s)
    assert view["state"] == "closing" and view["recording"] is None, view
    assert api.upload(s, 1, b"\0the cut last segment").status_code == 201
    api.finish(s)
    view = api.session(s)
    # A merge worker of this test process (another test's) may already be merging it.
    assert view["state"] in ("finished", "merging", "merged"), view
    assert view["last_seq"] == 1 and view["recording"] is not None, view
    roster = api.roster_sessions(exam["id"])
    assert [row["student_id"] for row in roster] == ["ender"]
    assert roster[0]["segments"] == 2 and roster[0]["next_seq"] == 2


def test_end_exam_without_upload_grace_finishes_at_once(api, settings_changed):
    settings_changed(end_grace_s=0)
    exam = api.create_exam()
    s = api.join(exam["id"], "ender-now")
    api.upload(s, 0, b"\0zero")
    assert api.post(f"/api/exams/{exam['id']}/end", "teacher").status_code == 200
    view = api.session(s)
    assert view["state"] in ("finished", "merging", "merged"), view
    assert view["last_seq"] == 0 and view["recording"] is not None, view


def test_recording_before_merge_is_404(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "norec")
    r = api.get(f"/api/sessions/{s['session_id']}/recording", s["token"])
    assert r.status_code == 404 and error_code(r) == "not_found"


# --- health -------------------------------------------------------------------------------------


def test_health_names_every_dependency(api):
    r = api.get("/health", "teacher")
    body = r.json()
    assert set(body["checks"]) == {"database", "redis", "storage", "ffmpeg"}
    assert r.status_code == 200 and body["down"] == [], body


def test_health_tells_anyone_else_only_up_or_down(api):
    for token in (None, "not-the-teacher"):
        r = api.get("/health", token)
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_unknown_route_is_json_404(api):
    r = api.get("/api/nope")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = api.delete("/api/exams")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_crash_leftover_file_is_replaced_and_concurrent_upload_waits(api):
    """A file without a row (a crash between link and insert) is overwritten by the next upload;
    while another upload of the same seq is recording itself, a second one is told to retry."""
    from proctor import locks

    exam = api.create_exam()
    s = api.join(exam["id"], "leftover")
    seg_dir = segment_dir(s)
    seg_dir.mkdir(parents=True, exist_ok=True)
    (seg_dir / "000000.mp4").write_bytes(b"half of an old upload")
    assert api.upload(s, 0, b"\0the real segment").status_code == 201
    assert (seg_dir / "000000.mp4").read_bytes() == b"\0the real segment"

    with locks.held(f"segment:{s['session_id']}:0:1", 30) as taken:  # run 0: the token API's
        assert taken
        r = api.upload(s, 1, b"\0racing")
        assert r.status_code == 409 and error_code(r) == "upload_in_progress"
    assert api.session(s)["segments"] == 1
    assert stored_files(s) == ["000000.mp4"]
    assert api.upload(s, 1, b"\0racing").status_code == 201


@pytest.mark.parametrize("path", [
    "/api/exams/99999999999999999999999",
    "/api/exams/9223372036854775808",
    "/api/exams/0",
    "/api/exams/007",
    "/api/exams/%D9%A3",  # an Arabic-Indic three
])
def test_ids_beyond_range_or_not_ascii_are_404(api, path):
    r = api.get(path, "teacher")
    assert r.status_code == 404 and error_code(r) == "not_found"


@pytest.mark.parametrize("seq", ["%C2%B2", "%E2%91%A0", "%D9%A3", "%EF%BC%93", "%F0%9D%9F%97", "0000001", "1000000"])
def test_seqs_are_ascii_digits_in_range(api, seq):
    exam = api.create_exam()
    s = api.join(exam["id"], unique("u"))
    r = api.put(f"/api/sessions/{s['session_id']}/segments/{seq}", s["token"], data=b"\x00\x00\x00\x18ftypmp42",
                headers={"Content-Type": "video/mp4"})
    assert r.status_code == 400 and error_code(r) == "invalid_seq", r.text
    assert api.session(s)["segments"] == 0
