"""The desktop seats' protocol, spoken as the installed client does (see the shared protocol
document): over real HTTP to Gunicorn, merged by a real Celery worker.

Each seat is its own loopback address (127.0.0.x): the server binds a session to the address a
seat logged in from, so several seats in one test need several source addresses.
"""
from __future__ import annotations

import os
import struct
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.conftest import wait_until
from tests.media_helpers import ffprobe_streams, make_clip

DATA = Path(os.environ["PROCTOR_DATA_DIR"])


# --- a seat, written from the protocol document ------------------------------------------------


class SourceAddressAdapter(HTTPAdapter):
    """Send from a chosen local address (any 127.0.0.0/8 address works on Linux loopback)."""

    def __init__(self, source: str, **kw):
        self.source = source
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kw)


class Seat:
    def __init__(self, base: str, addr: str, student_id: str, student_name: str):
        self.base, self.addr = base, addr
        self.student_id, self.student_name = student_id, student_name
        self.exam_id: int | None = None
        self.http = requests.Session()
        self.http.mount("http://", SourceAddressAdapter(addr))

    def get(self, path: str):
        return self.http.get(self.base + path, timeout=30)

    def post_json(self, path: str, body: dict):
        return self.http.post(self.base + path, json=body, timeout=30)

    def post_form(self, path: str, fields: dict, files: dict | None = None):
        return self.http.post(self.base + path, data=fields, files=files or {}, timeout=60)

    # The calls, with the protocol's field names.
    def login(self) -> dict:
        r = self.post_json("/api/login", {"student_id": self.student_id, "student_name": self.student_name})
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] == "success":
            self.exam_id = body["exam_id"]
        return body

    def select_exam(self, exam_id: int):
        r = self.post_json(
            "/api/login/select_exam",
            {"student_id": self.student_id, "student_name": self.student_name, "exam_id": exam_id},
        )
        if r.status_code == 200 and r.json()["status"] == "success":
            self.exam_id = exam_id
        return r

    def ids(self) -> dict:
        return {"student_id": self.student_id, "exam_id": self.exam_id}

    def heartbeat(self):
        return self.post_json("/api/heartbeat", self.ids())

    def recording(self, sequence: int, path: Path, timestamp: str | None = None):
        fields = {
            **self.ids(),
            "timestamp": timestamp or datetime.now().isoformat(timespec="seconds"),
            "sequence": str(sequence),
            "fps": "2",
            "quality": "80",
        }
        with open(path, "rb") as fh:
            return self.post_form("/api/screen_recording", fields, {"video": (path.name, fh, "application/octet-stream")})

    def screenshot(self, png: bytes):
        fields = {**self.ids(), "username": self.student_name, "timestamp": datetime.now().isoformat()}
        return self.post_form("/api/screenshot", fields, {"screenshot": ("screen.png", png, "image/png")})

    def frame(self, jpeg: bytes):
        fields = {**self.ids(), "timestamp": datetime.now().isoformat()}
        return self.post_form("/api/screen_frame", fields, {"frame": ("frame.jpg", jpeg, "image/jpeg")})

    def violation(self, reason: str, png: bytes | None = None):
        fields = {**self.ids(), "username": self.student_name, "reason": reason,
                  "timestamp": datetime.now().isoformat()}
        files = {"screenshot": ("violation.png", png, "image/png")} if png else None
        return self.post_form("/api/violation", fields, files)

    def logout(self):
        return self.post_json("/api/logout", self.ids())


def png_image(width: int = 8, height: int = 8, rgb=(200, 30, 30)) -> bytes:
    """A minimal valid PNG, written by hand (zlib only)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg_image(tmp_path: Path) -> bytes:
    import subprocess

    out = tmp_path / "frame.jpg"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=blue:size=64x64",
         "-frames:v", "1", "-y", str(out)],
        check=True,
    )
    return out.read_bytes()


def seat_error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"status", "message"} and body["status"] == "error", body
    assert body["message"]
    return body["message"]


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**10}"


# --- the whole exam, three seats ------------------------------------------------------------------


def wait_merged(api, session_id: int) -> dict:
    return wait_until(
        lambda: (v := api.get(f"/api/sessions/{session_id}", "teacher").json())["state"]
        in {"merged", "partial", "failed"} and v,
        timeout=120, interval=0.5, what=f"session {session_id} merged",
    )


def test_whole_exam_three_seats(api, server, merge_worker, tmp_path):
    ids = [unique("hall-a"), unique("hall-b"), unique("hall-c")]
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    exam = api.create_exam(title="Hall exam", roster=[{"student_id": i, "name": n} for i, n in zip(ids, names)])
    seats = [Seat(server, f"127.0.0.{n}", i, name) for n, i, name in zip((11, 12, 13), ids, names)]

    # Before logging in, a seat reads the clock, its settings and its student's name.
    a = seats[0]
    assert len(a.get("/api/server_time").json()["server_time"]) == len("YYYY-MM-DD HH:MM:SS")
    config = a.get("/api/config").json()
    assert config["status"] == "success" and config["config"]["screen_recording"]["recording"]["fps"] >= 1
    r = a.get(f"/api/students/{ids[0]}")
    assert r.json() == {"status": "success", "student_id": ids[0], "student_name": names[0]}

    for seat in seats:
        answer = seat.login()
        assert answer["status"] == "success" and answer["exam_id"] == exam["id"], answer
        assert {"exam_id", "student_id", "exam_name", "start_time", "end_time", "default_url",
                "delay_min", "disable_new_tabs"} <= set(answer)
        r = seat.heartbeat()
        assert r.status_code == 200 and r.json() == {"status": "success"}, r.text

    # Seat A counts its mp4 segments from 1, seat B its webm from 0; seat C re-sends one.
    mp4 = [make_clip(tmp_path / f"a{i}.mp4", seconds=1.0) for i in range(3)]
    webm = [make_clip(tmp_path / f"b{i}.webm", seconds=1.0, codec="vp8", container="webm") for i in range(3)]
    for sequence, clip in zip((1, 2, 3), mp4):
        r = seats[0].recording(sequence, clip)
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        assert r.json()["file_size"] == clip.stat().st_size
    for sequence, clip in enumerate(webm):
        assert seats[1].recording(sequence, clip).status_code == 200
    for sequence, clip in enumerate(mp4[:2]):
        assert seats[2].recording(sequence, clip).status_code == 200
    again = seats[2].recording(1, mp4[1])  # the seat's retry after a lost answer
    assert again.status_code == 200 and again.json()["filename"] == "000001.mp4"

    png = png_image()
    for seat in seats:
        r = seat.screenshot(png)
        assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    assert seats[1].frame(jpeg_image(tmp_path)).status_code == 200
    r = seats[0].violation("opened a forbidden application: calc.exe", png)
    assert r.status_code == 200 and r.json()["status"] == "success" and r.json()["violation_id"] > 0

    # The teacher extends the exam; the seats learn it from their next heartbeat.
    new_end = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=30)
    r = api.http.patch(api.url(f"/api/exams/{exam['id']}"), headers=api.admin, json={"ends_at": new_end.isoformat()})
    assert r.status_code == 200, r.text
    hb = seats[0].heartbeat().json()
    assert hb["status"] == "success" and datetime.fromisoformat(hb["end_time"]) == new_end.replace(microsecond=0)

    for seat in seats:
        r = seat.logout()
        assert r.status_code == 200 and r.json()["status"] == "success" and r.json()["message"], r.text

    sessions = {s["student_id"]: s for s in api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"]}
    expected = {ids[0]: 3, ids[1]: 3, ids[2]: 2}
    for student_id, n in expected.items():
        view = wait_merged(api, sessions[student_id]["id"])
        rec = view["recording"]
        assert view["state"] == "merged", view
        assert rec["gaps"] == [] and rec["report"]["segments_used"] == list(range(n)), rec
        assert abs(rec["duration"] - n) <= 0.3, rec
        out = tmp_path / f"{student_id}.out"
        out.write_bytes(api.get(f"/api/sessions/{view['id']}/recording", "teacher").content)
        assert abs(float(ffprobe_streams(out)["format"]["duration"]) - n) <= 0.3

    violations = api.get(f"/api/exams/{exam['id']}/violations", "teacher").json()["violations"]
    assert [(v["student_id"], v["reason"], v["via"]) for v in violations] == [
        (ids[0], "opened a forbidden application: calc.exe", "legacy")
    ]
    shot = api.get(violations[0]["screenshot"]["url"], "teacher")
    assert shot.status_code == 200 and shot.content == png and shot.headers["Content-Type"] == "image/png"
    per_student = api.get(f"/api/exams/{exam['id']}/violations?student_id={ids[1]}", "teacher").json()
    assert per_student["violations"] == []
    shots = api.get(f"/api/sessions/{sessions[ids[1]]['id']}/screenshots", "teacher").json()["screenshots"]
    assert sorted(s["kind"] for s in shots) == ["frame", "periodic"]

    history = api.get(f"/api/exams/{exam['id']}/logins", "teacher").json()["logins"]
    for seat in seats:
        mine = [(e["kind"], e["via"], e["client_addr"]) for e in history if e["student_id"] == seat.student_id]
        assert mine == [("login", "legacy", seat.addr), ("logout", "legacy", seat.addr)]
    assert not any(e["flagged"] for e in history)


# --- choosing among several exams -----------------------------------------------------------------


def test_choice_required_then_select_exam(api, server):
    sid = unique("two-exams")
    first = api.create_exam(title="Maths", roster=[sid])
    second = api.create_exam(title="Physics", roster=[sid])
    seat = Seat(server, "127.0.0.21", sid, "Anyone")
    answer = seat.login()
    assert answer["status"] == "choice_required" and answer["message"]
    assert [e["id"] for e in answer["exams"]] == [first["id"], second["id"]]
    assert {"id", "name", "start_time", "end_time"} == set(answer["exams"][0])
    assert seat.exam_id is None

    seat_error(seat.select_exam(999_999), 404)
    r = seat.select_exam(second["id"])
    assert r.status_code == 200 and r.json()["exam_id"] == second["id"] and r.json()["exam_name"] == "Physics"
    assert seat.heartbeat().status_code == 200
    assert api.get(f"/api/exams/{first['id']}", "teacher").json()["sessions"]["total"] == 0


def test_exam_seat_settings_reach_the_login(api, server):
    sid = unique("settings")
    exam = api.create_exam(roster=[sid])
    r = api.http.patch(
        api.url(f"/api/exams/{exam['id']}"), headers=api.admin,
        json={"settings": {"default_url": "https://exam.example/start", "delay_min": 5, "disable_new_tabs": True}},
    )
    assert r.status_code == 200 and r.json()["settings"]["delay_min"] == 5, r.text
    answer = Seat(server, "127.0.0.22", sid, "x").login()
    assert (answer["default_url"], answer["delay_min"], answer["disable_new_tabs"]) == (
        "https://exam.example/start", 5, True)


# --- seat binding ---------------------------------------------------------------------------------


def test_another_address_is_refused_and_shown(api, server, tmp_path):
    sid = unique("bound")
    exam = api.create_exam(roster=[sid])
    seat = Seat(server, "127.0.0.31", sid, "Bound Student")
    seat.login()
    intruder = Seat(server, "127.0.0.32", sid, "Bound Student")
    intruder.exam_id = exam["id"]
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5)

    seat_error(intruder.heartbeat(), 403)
    seat_error(intruder.recording(0, clip), 403)
    seat_error(intruder.violation("framing the student"), 403)
    seat_error(intruder.logout(), 403)

    session = api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"][0]
    assert session["state"] == "active" and session["segments"] == 0
    assert api.get(f"/api/exams/{exam['id']}/violations", "teacher").json()["violations"] == []
    flagged = api.get(f"/api/exams/{exam['id']}/logins?flagged=1", "teacher").json()["logins"]
    assert [(e["kind"], e["client_addr"]) for e in flagged] == [("refused", "127.0.0.32")]  # once a minute
    assert seat.heartbeat().status_code == 200  # the real seat is unaffected


def test_second_login_is_flagged_and_takes_over(api, server):
    sid = unique("twice")
    exam = api.create_exam(roster=[sid])
    first = Seat(server, "127.0.0.41", sid, "Twice")
    first.login()
    assert first.heartbeat().status_code == 200
    second = Seat(server, "127.0.0.42", sid, "Twice")
    assert second.login()["status"] == "success"

    logins = api.get(f"/api/exams/{exam['id']}/logins", "teacher").json()["logins"]
    assert [(e["kind"], e["client_addr"], e["flagged"]) for e in logins] == [
        ("login", "127.0.0.41", False), ("rejoin", "127.0.0.42", True)]
    assert "127.0.0.41" in logins[1]["detail"]
    seat_error(first.heartbeat(), 403)
    assert second.heartbeat().status_code == 200


# --- bad calls: the seat's error shape, nothing changed ----------------------------------------------


@pytest.fixture
def logged_in(api, server):
    sid = unique("bad")
    exam = api.create_exam(roster=[{"student_id": sid, "name": "Bad Caller"}])
    seat = Seat(server, "127.0.0.51", sid, "Bad Caller")
    seat.login()
    return exam, seat


def _session(api, exam) -> dict:
    return api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"][0]


def test_unknown_student_and_wrong_name(api, server, logged_in):
    exam, seat = logged_in
    seat_error(Seat(server, "127.0.0.51", "nobody-" + seat.student_id, "No One").post_json(
        "/api/login", {"student_id": "nobody-" + seat.student_id, "student_name": "No One"}), 404)
    seat_error(seat.get(f"/api/students/nobody-{seat.student_id}"), 404)
    seat_error(seat.post_json("/api/login", {"student_id": seat.student_id, "student_name": "Someone Else"}), 403)
    assert api.get(f"/api/exams/{exam['id']}", "teacher").json()["sessions"]["total"] == 1


def test_wrong_exam(api, server, logged_in):
    exam, seat = logged_in
    other = api.create_exam()
    wrong = Seat(server, seat.addr, seat.student_id, seat.student_name)
    wrong.exam_id = other["id"]
    seat_error(wrong.heartbeat(), 403)
    seat_error(wrong.logout(), 403)
    wrong.exam_id = 999_999
    seat_error(wrong.heartbeat(), 403)
    assert _session(api, exam)["state"] == "active"
    assert api.get(f"/api/exams/{other['id']}", "teacher").json()["sessions"]["total"] == 0


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/login", {}),
        ("/api/login", {"student_name": "x"}),
        ("/api/login", {"student_id": "has space", "student_name": "x"}),
        ("/api/login/select_exam", {"student_id": "x", "student_name": "x"}),
        ("/api/login/select_exam", {"student_id": "x", "student_name": "x", "exam_id": "abc"}),
        ("/api/heartbeat", {"student_id": "x"}),
        ("/api/heartbeat", {"exam_id": 1}),
        ("/api/logout", {}),
    ],
)
def test_missing_json_fields_are_400(server, path, body):
    seat = Seat(server, "127.0.0.52", "x", "x")
    message = seat_error(seat.post_json(path, body), 400)
    assert "student_id" in message or "exam_id" in message


def test_bad_uploads_change_nothing(api, server, logged_in, tmp_path):
    exam, seat = logged_in
    clip = make_clip(tmp_path / "ok.mp4", seconds=0.5)
    png = png_image()
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "fake.mp4").write_bytes(png)
    (tmp_path / "fake.webm").write_bytes(clip.read_bytes())  # an mp4 posing as webm

    seat_error(seat.recording(0, tmp_path / "notes.txt"), 415)
    seat_error(seat.recording(0, tmp_path / "fake.mp4"), 415)
    seat_error(seat.recording(0, tmp_path / "fake.webm"), 415)
    with open(clip, "rb") as fh:  # the file under another field name
        seat_error(seat.post_form("/api/screen_recording", {**seat.ids(), "sequence": "0"}, {"file": ("ok.mp4", fh)}), 400)
    with open(clip, "rb") as fh:  # no sequence
        seat_error(seat.post_form("/api/screen_recording", seat.ids(), {"video": ("ok.mp4", fh)}), 400)
    with open(clip, "rb") as fh:
        seat_error(seat.post_form("/api/screen_recording", {**seat.ids(), "sequence": "0", "timestamp": "soon"},
                                  {"video": ("ok.mp4", fh)}), 400)
    seat_error(seat.post_form("/api/screenshot", seat.ids(), {"screenshot": ("s.png", b"GIF89a....", "image/png")}), 415)
    seat_error(seat.post_form("/api/screenshot", seat.ids()), 400)
    seat_error(seat.post_form("/api/violation", {**seat.ids(), "username": "x"}), 400)  # no reason
    seat_error(seat.violation("with a bad image", b"not an image"), 415)

    session = _session(api, exam)
    assert session["segments"] == 0 and session["state"] == "active"
    assert api.get(f"/api/sessions/{session['id']}/screenshots", "teacher").json()["screenshots"] == []
    assert api.get(f"/api/exams/{exam['id']}/violations", "teacher").json()["violations"] == []
    for sub in ("segments", "screenshots"):
        d = DATA / sub / str(session["id"])
        assert not d.exists() or list(d.iterdir()) == []

    # And the good upload still goes through; the same sequence with other bytes is a conflict.
    assert seat.recording(0, clip).status_code == 200
    other = make_clip(tmp_path / "other.mp4", seconds=0.7)
    seat_error(seat.recording(0, other), 409)


def test_oversized_upload_refused_before_reading(api, server, logged_in):
    import socket

    exam, seat = logged_in
    host, port = server.removeprefix("http://").split(":")
    head = (
        "POST /api/screen_recording HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {65 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10, source_address=(seat.addr, 0)) as sock:
        sock.sendall(head.encode() + b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.split(b" ", 2)[1] == b"413"
    assert b'"status":"error"' in data.replace(b" ", b"")
    assert _session(api, exam)["segments"] == 0


def test_sequence_counting_from_one_is_decided_once(api, server, logged_in, tmp_path):
    exam, seat = logged_in
    clips = [make_clip(tmp_path / f"s{i}.webm", seconds=0.5, codec="vp8", container="webm") for i in range(3)]
    assert seat.recording(1, clips[0]).json()["filename"] == "000000.webm"
    assert seat.recording(2, clips[1]).json()["filename"] == "000001.webm"
    # Logging in again (a seat restart) keeps the decision.
    seat.login()
    assert seat.recording(3, clips[2]).json()["filename"] == "000002.webm"
    seat_error(seat.recording(0, clips[0]), 400)  # no sequence 0 from a seat counting from 1
    assert _session(api, exam)["next_seq"] == 3


def test_logout_is_repeatable_and_ends_heartbeats(api, server, logged_in):
    exam, seat = logged_in
    assert seat.logout().json()["status"] == "success"
    assert seat.logout().json()["status"] == "success"
    seat_error(seat.heartbeat(), 409)
    assert _session(api, exam)["state"] != "active"


# --- settings served to the seats -------------------------------------------------------------------


def test_config_serves_only_seat_settings(api, server):
    seat = Seat(server, "127.0.0.61", "x", "x")
    body = seat.get("/api/config").json()
    assert set(body) == {"status", "config"}
    expected = {
        "allowed_apps", "allowed_executables", "allowed_urls", "allowed_url_patterns", "default_url",
        "exam_time_limit", "chrome_settings", "enable_server_reporting", "screenshot_on_violation",
        "enable_screen_recording", "enable_screenshot_upload", "screen_recording",
    }
    assert set(body["config"]) == expected
    text = seat.get("/api/config").text.lower()
    for secret in ("password", "database", "redis", "token", "secret"):
        assert secret not in text

    new = {"allowed_apps": [{"exe": "notepad.exe", "name": "Notepad"}], "allowed_url_patterns": [r"^https://exam\."],
           "screen_recording": {"recording": {"fps": 5, "codec": "webm"}}}
    assert api.put("/api/admin/seat-config", json=new).status_code == 401
    r = api.put("/api/admin/seat-config", "teacher", json=new)
    assert r.status_code == 200, r.text
    config = seat.get("/api/config").json()["config"]
    assert config["allowed_apps"] == [{"exe": "notepad.exe", "name": "Notepad"}]
    assert config["screen_recording"]["recording"]["fps"] == 5
    assert config["screen_recording"]["upload"]["retry_count"] == 3  # defaults fill the rest
    for bad in ({"allowed_url_patterns": ["(unclosed"]}, {"database_password": "x"},
                {"screen_recording": {"recording": {"codec": "avi"}}}):
        r = api.put("/api/admin/seat-config", "teacher", json=bad)
        assert r.status_code == 400, bad
    assert seat.get("/api/config").json()["config"]["screen_recording"]["recording"]["fps"] == 5
    api.put("/api/admin/seat-config", "teacher", json={})  # back to the defaults for other tests


# --- rate limit, switch, time parsing -----------------------------------------------------------------


def test_rate_limit_per_address(server):
    flooder = Seat(server, "127.0.0.99", "x", "x")
    statuses = [flooder.get("/api/students/enumerate-me").status_code for _ in range(61)]
    assert statuses[:60] == [404] * 60
    seat_error(flooder.get("/api/students/enumerate-me"), 429)
    # Another address is not affected.
    assert Seat(server, "127.0.0.98", "x", "x").get("/api/students/enumerate-me").status_code == 404


def test_legacy_api_can_be_turned_off(monkeypatch):
    from proctor import create_app
    from proctor.config import settings

    monkeypatch.setenv("PROCTOR_LEGACY_API", "0")
    settings.cache_clear()
    try:
        client = create_app().test_client()
        assert client.post("/api/login", json={"student_id": "x", "student_name": "x"}).status_code == 404
        assert client.get("/api/config").status_code == 404
        assert client.get("/health").status_code in (200, 503)
    finally:
        monkeypatch.delenv("PROCTOR_LEGACY_API")
        settings.cache_clear()


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)),
        ("2026-03-01T08:00:00Z", datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)),
        ("2026-03-01T08:00:00.250000+00:00", datetime(2026, 3, 1, 8, 0, 0, 250000, tzinfo=timezone.utc)),
        ("1772352000", datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)),
        ("1772352000000", datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(raw, expected):
    from proctor.legacy import parse_time

    assert parse_time(raw) == expected


def test_parse_naive_time_is_server_local():
    from proctor.legacy import parse_time

    naive = datetime(2026, 3, 1, 10, 0, 0)
    expected = naive.astimezone().astimezone(timezone.utc)
    assert parse_time("2026-03-01T10:00:00") == expected
    assert parse_time("2026-03-01 10:00:00") == expected
    assert parse_time("20260301_100000") == expected
    from proctor.errors import BadRequest

    with pytest.raises(BadRequest):
        parse_time("next tuesday")
