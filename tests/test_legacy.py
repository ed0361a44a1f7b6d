"""The desktop seats' protocol, spoken as the installed client does (see the shared protocol
document): in-process for the calls and their refusals, over real HTTP to Gunicorn for a whole exam
merged by a real Celery worker and for an upload refused before its body is read.

Each seat is its own address (127.0.0.x): the server binds a session to the address a seat logged
in from, so several seats in one test need several source addresses (in-process, the address the
app sees; over HTTP, a loopback address the socket is bound to).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import (
    ADMIN_TOKEN,
    DATA,
    Seat,
    error_code,
    jpeg_image,
    png_image,
    raw_request,
    seat_error,
    unique,
)
from tests.media_helpers import ffprobe_streams, make_clip


# --- the whole exam, three seats ------------------------------------------------------------------


def test_whole_exam_three_seats(http_api, merge_worker, suite_settings, tmp_path):
    api = http_api  # the whole stack: every call over real HTTP to Gunicorn
    ids = [unique("hall-a"), unique("hall-b"), unique("hall-c")]
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    exam = api.create_exam(title="Hall exam", roster=[{"student_id": i, "name": n} for i, n in zip(ids, names)])
    seats = [Seat(api, f"127.0.0.{n}", i, name) for n, i, name in zip((11, 12, 13), ids, names)]

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
    r = api.patch(f"/api/exams/{exam['id']}", json={"ends_at": new_end.isoformat()})
    assert r.status_code == 200, r.text
    hb = seats[0].heartbeat().json()
    # Naive, in the exam office's time: the seat subtracts its own naive local clock from it.
    local_end = new_end.astimezone(suite_settings.timezone).replace(tzinfo=None, microsecond=0)
    assert hb["status"] == "success" and datetime.fromisoformat(hb["end_time"]) == local_end, hb

    for seat in seats:
        r = seat.logout()
        assert r.status_code == 200 and r.json()["status"] == "success" and r.json()["message"], r.text

    sessions = {s["student_id"]: s for s in api.roster_sessions(exam["id"])}
    sent = {ids[0]: [1, 2, 3], ids[1]: [0, 1, 2], ids[2]: [0, 1]}  # each seat's sequences, as it counts
    for student_id, sequences in sent.items():
        n = len(sequences)
        view = api.wait_for_state(sessions[student_id]["id"])
        rec = view["recording"]
        assert view["state"] == "merged", view
        assert rec["gaps"] == [] and rec["report"]["segments_used"] == sequences, rec
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


def test_choice_required_then_select_exam(api):
    sid = unique("two-exams")
    first = api.create_exam(title="Maths", roster=[sid])
    second = api.create_exam(title="Physics", roster=[sid])
    seat = Seat(api, "127.0.0.21", sid, "Anyone")
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


def test_exam_seat_settings_reach_the_login(api):
    sid = unique("settings")
    exam = api.create_exam(roster=[sid])
    r = api.patch(
        f"/api/exams/{exam['id']}",
        json={"settings": {"default_url": "https://exam.example/start", "delay_min": 5, "disable_new_tabs": True}},
    )
    assert r.status_code == 200 and r.json()["settings"]["delay_min"] == 5, r.text
    answer = Seat(api, "127.0.0.22", sid, "x").login()
    assert (answer["default_url"], answer["delay_min"], answer["disable_new_tabs"]) == (
        "https://exam.example/start", 5, True)


# --- seat binding ---------------------------------------------------------------------------------


def test_another_address_is_refused_and_shown(api, tmp_path):
    sid = unique("bound")
    exam = api.create_exam(roster=[sid])
    seat = Seat(api, "127.0.0.31", sid, "Bound Student")
    seat.login()
    intruder = Seat(api, "127.0.0.32", sid, "Bound Student")
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


def test_second_login_is_flagged_and_takes_over(api):
    sid = unique("twice")
    exam = api.create_exam(roster=[sid])
    first = Seat(api, "127.0.0.41", sid, "Twice")
    first.login()
    assert first.heartbeat().status_code == 200
    second = Seat(api, "127.0.0.42", sid, "Twice")
    assert second.login()["status"] == "success"

    logins = api.get(f"/api/exams/{exam['id']}/logins", "teacher").json()["logins"]
    assert [(e["kind"], e["client_addr"], e["flagged"]) for e in logins] == [
        ("login", "127.0.0.41", False), ("rejoin", "127.0.0.42", True)]
    assert "127.0.0.41" in logins[1]["detail"]
    seat_error(first.heartbeat(), 403)
    assert second.heartbeat().status_code == 200


# --- bad calls: the seat's error shape, nothing changed ----------------------------------------------


@pytest.fixture
def logged_in(api):
    sid = unique("bad")
    exam = api.create_exam(roster=[{"student_id": sid, "name": "Bad Caller"}])
    seat = Seat(api, "127.0.0.51", sid, "Bad Caller")
    seat.login()
    return exam, seat


def _session(api, exam) -> dict:
    return api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"][0]


def test_unknown_student_and_wrong_name(api, logged_in):
    exam, seat = logged_in
    seat_error(Seat(api, "127.0.0.51", "nobody-" + seat.student_id, "No One").post_json(
        "/api/login", {"student_id": "nobody-" + seat.student_id, "student_name": "No One"}), 404)
    seat_error(seat.get(f"/api/students/nobody-{seat.student_id}"), 404)
    seat_error(seat.post_json("/api/login", {"student_id": seat.student_id, "student_name": "Someone Else"}), 403)
    assert api.get(f"/api/exams/{exam['id']}", "teacher").json()["sessions"]["total"] == 1


def test_wrong_exam(api, logged_in):
    exam, seat = logged_in
    other = api.create_exam()
    wrong = Seat(api, seat.addr, seat.student_id, seat.student_name)
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
def test_missing_json_fields_are_400(api, path, body):
    seat = Seat(api, "127.0.0.52", "x", "x")
    message = seat_error(seat.post_json(path, body), 400)
    assert "student_id" in message or "exam_id" in message


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("legacy") / "ok.mp4", seconds=0.5).read_bytes()


BAD_CALLS = {
    # name: (the call, given the seat and a valid mp4's bytes; the status)
    "a text file as video": (lambda seat, clip: seat.send_recording(0, "notes.txt", b"not a video"), 415),
    "a png as mp4": (lambda seat, clip: seat.send_recording(0, "fake.mp4", png_image()), 415),
    "an mp4 as webm": (lambda seat, clip: seat.send_recording(0, "fake.webm", clip), 415),
    "a bad timestamp": (lambda seat, clip: seat.send_recording(0, "ok.mp4", clip, timestamp="soon"), 400),
    "the video under another field": (lambda seat, clip: seat.post_form(
        "/api/screen_recording", {**seat.ids(), "sequence": "0"}, {"file": ("ok.mp4", clip)}), 400),
    "no sequence": (lambda seat, clip: seat.post_form(
        "/api/screen_recording", seat.ids(), {"video": ("ok.mp4", clip)}), 400),
    "a gif as screenshot": (lambda seat, clip: seat.post_form(
        "/api/screenshot", seat.ids(), {"screenshot": ("s.png", b"GIF89a....", "image/png")}), 415),
    "a screenshot without image": (lambda seat, clip: seat.post_form("/api/screenshot", seat.ids()), 400),
    "a violation without reason": (lambda seat, clip: seat.post_form(
        "/api/violation", {**seat.ids(), "username": "x"}), 400),
    "a violation with a bad image": (lambda seat, clip: seat.violation("with a bad image", b"not an image"), 415),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_uploads_change_nothing(api, logged_in, clip, name):
    exam, seat = logged_in
    call, status = BAD_CALLS[name]
    seat_error(call(seat, clip), status)

    session = _session(api, exam)
    assert session["segments"] == 0 and session["state"] == "active"
    assert api.get(f"/api/sessions/{session['id']}/screenshots", "teacher").json()["screenshots"] == []
    assert api.get(f"/api/exams/{exam['id']}/violations", "teacher").json()["violations"] == []
    for sub in ("segments", "screenshots"):
        d = DATA / sub / str(session["id"])
        assert not d.exists() or list(d.iterdir()) == []
    # And the good upload still goes through.
    assert seat.send_recording(0, "ok.mp4", clip).status_code == 200


def test_the_same_sequence_with_other_bytes_is_a_conflict(api, logged_in, clip, tmp_path):
    exam, seat = logged_in
    assert seat.send_recording(0, "ok.mp4", clip).status_code == 200
    assert seat.send_recording(0, "ok.mp4", clip).status_code == 200  # a retry after a lost answer
    seat_error(seat.recording(0, make_clip(tmp_path / "other.mp4", seconds=0.7)), 409)
    assert _session(api, exam)["segments"] == 1


def test_oversized_upload_refused_before_reading(api, server, logged_in):
    exam, seat = logged_in
    head = (
        "POST /api/screen_recording HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {65 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    )
    # Only 1000 bytes of the announced 65 MiB follow: an answer at all means it was not read.
    status, raw = raw_request(server, head, b"x" * 1000, source=seat.addr)
    assert status == 413
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert body["status"] == "error" and body["message"]
    assert _session(api, exam)["segments"] == 0


def test_a_restarted_seat_counts_from_one_again_in_a_run_of_its_own(api, logged_in, tmp_path):
    exam, seat = logged_in
    clips = [make_clip(tmp_path / f"s{i}.webm", seconds=0.5, codec="vp8", container="webm") for i in range(3)]
    assert seat.recording(1, clips[0]).json()["filename"] == "000001.webm"
    assert seat.recording(2, clips[1]).json()["filename"] == "000002.webm"
    # The seat restarts: it logs in again and sends sequence 1 again, with other bytes.
    seat.login()
    r = seat.recording(1, clips[2])
    assert r.status_code == 200 and r.json()["filename"] == "r1-000001.webm", r.text
    assert seat.recording(1, clips[2]).json()["filename"] == "r1-000001.webm"  # its retry: the same
    assert _session(api, exam)["segments"] == 3


def test_logout_is_repeatable_and_ends_heartbeats(api, logged_in):
    exam, seat = logged_in
    assert seat.logout().json()["status"] == "success"
    assert seat.logout().json()["status"] == "success"
    seat_error(seat.heartbeat(), 409)
    assert _session(api, exam)["state"] != "active"


# --- settings served to the seats -------------------------------------------------------------------


NEW_SEAT_CONFIG = {"allowed_apps": [{"exe": "notepad.exe", "name": "Notepad"}],
                   "allowed_url_patterns": [r"^https://exam\."],
                   "screen_recording": {"recording": {"fps": 5, "codec": "webm"}}}


def test_config_serves_only_seat_settings(api, seat_config):
    seat = Seat(api, "127.0.0.61", "x", "x")
    body = seat.get("/api/config").json()
    assert set(body) == {"status", "config"}
    expected = {
        "allowed_apps", "allowed_executables", "allowed_urls", "allowed_url_patterns", "default_url",
        "exam_time_limit", "chrome_settings", "enable_server_reporting", "screenshot_on_violation",
        "enable_screen_recording", "enable_screenshot_upload", "screen_recording",
        "end_violation_foreground_process", "show_violation_warning",
    }
    assert set(body["config"]) == expected
    text = seat.get("/api/config").text.lower()
    for secret in ("password", "database", "redis", "token", "secret"):
        assert secret not in text

    assert api.put("/api/admin/seat-config", json=NEW_SEAT_CONFIG).status_code == 401
    r = api.put("/api/admin/seat-config", "teacher", json=NEW_SEAT_CONFIG)
    assert r.status_code == 200, r.text
    config = seat.get("/api/config").json()["config"]
    assert config["allowed_apps"] == [{"exe": "notepad.exe", "name": "Notepad"}]
    assert config["screen_recording"]["recording"]["fps"] == 5
    assert config["screen_recording"]["upload"]["retry_count"] == 3  # defaults fill the rest


@pytest.mark.parametrize("bad", [{"allowed_url_patterns": ["(unclosed"]}, {"database_password": "x"},
                                 {"screen_recording": {"recording": {"codec": "avi"}}}])
def test_bad_seat_config_is_400_and_changes_nothing(api, seat_config, bad):
    assert api.put("/api/admin/seat-config", "teacher", json=NEW_SEAT_CONFIG).status_code == 200
    r = api.put("/api/admin/seat-config", "teacher", json=bad)
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text
    config = Seat(api, "127.0.0.61", "x", "x").get("/api/config").json()["config"]
    assert config["screen_recording"]["recording"]["fps"] == 5
    assert config["allowed_apps"] == NEW_SEAT_CONFIG["allowed_apps"]


# --- rate limit, switch, time parsing -----------------------------------------------------------------


def test_lookups_are_rate_limited_per_seat_and_per_address(api, settings_changed):
    # Small budgets, set here: the test is about who shares one, not about the defaults.
    settings_changed(legacy_login_rate_limit="5 per minute", join_address_rate_limit="8 per minute")
    flooder = Seat(api, "127.0.0.99", "x", "x")
    assert [flooder.get("/api/students/enumerate-me").status_code for _ in range(5)] == [404] * 5
    seat_error(flooder.get("/api/students/enumerate-me"), 429)
    # Another seat behind the same address (another student) has a budget of its own...
    assert flooder.get("/api/students/someone-else").status_code == 404
    # ...and another address is not affected at all.
    assert Seat(api, "127.0.0.98", "x", "x").get("/api/students/enumerate-me").status_code == 404
    # The whole address has a ceiling too, whichever students it names.
    hall = Seat(api, "127.0.0.97", "x", "x")
    assert [hall.get(f"/api/students/seat-{n}").status_code for n in range(8)] == [404] * 8
    seat_error(hall.get("/api/students/seat-8"), 429)


def test_legacy_api_can_be_turned_off(app_with):
    app = app_with(legacy_api=False)
    assert not [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("legacy.")]
    client = app.test_client()
    assert client.post("/api/login", json={"student_id": "x", "student_name": "x"}).status_code == 404
    assert client.get("/api/config").status_code == 404
    # Only the seats' protocol is gone: the token API and the health check answer as ever.
    health = client.get("/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert health.status_code == 200 and health.get_json()["down"] == [], health.get_json()
    assert client.get("/api/exams", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


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
    from proctor.clock import parse_time

    assert parse_time(raw) == expected


def test_parse_naive_time_is_server_local():
    from proctor.clock import parse_time

    naive = datetime(2026, 3, 1, 10, 0, 0)
    expected = naive.astimezone().astimezone(timezone.utc)
    assert parse_time("2026-03-01T10:00:00") == expected
    assert parse_time("2026-03-01 10:00:00") == expected
    assert parse_time("20260301_100000") == expected
    from proctor.errors import BadRequest

    with pytest.raises(BadRequest):
        parse_time("next tuesday")


def test_a_seat_timestamp_in_unicode_digits_is_refused(api):
    from proctor.clock import parse_time
    from proctor.errors import BadRequest

    with pytest.raises(BadRequest):
        parse_time("٣٣٣٣٣٣٣٣٣٣")
