"""Every body is bounded before it is read, imports are atomic and bounded, no input gives a 500.

In-process (Flask's test client) where the app's own checks are the point; over real Gunicorn
where the server is (a chunked body, the memory of a worker given a huge body).
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
import requests

from tests.helpers import (Api, HttpTransport, Seat, error_code, png_image, raw_request, seat_error, start_gunicorn,
                           unique)
from tests.test_api import stored_files
from tests.test_upload_memory import peak_rss_kib, worker_pid

MAX_JSON = 64 * 1024
WEBM_HEAD = b"\x1a\x45\xdf\xa3" + bytes(60)
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + bytes(52)
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>\n"


def _session(api: Api, student: str = "bounds") -> dict:
    sid = unique(student)
    exam = api.create_exam(roster=[sid])
    return api.join(exam["id"], sid)


def _session_routes(api: Api) -> list[tuple[str, str, str | None]]:
    """(method, path, token) of every token-API call that reads a small JSON body."""
    s = _session(api)
    exam_id = api.session(s)["exam_id"]
    return [
        ("POST", f"/api/exams/{exam_id}/join", None),
        ("POST", f"/api/sessions/{s['session_id']}/finish", s["token"]),
        ("POST", f"/api/sessions/{s['session_id']}/violations", s["token"]),
        ("PATCH", f"/api/exams/{exam_id}", "teacher"),
    ]


def _roster_routes(api: Api) -> list[tuple[str, str, str | None]]:
    """Calls whose JSON may carry a whole roster (bounded by PROCTOR_MAX_IMPORT_BYTES)."""
    exam = api.create_exam()
    return [
        ("POST", "/api/exams", "teacher"),
        ("POST", f"/api/exams/{exam['id']}/roster", "teacher"),
        ("POST", "/api/admin/students", "teacher"),
        ("PUT", "/api/admin/seat-config", "teacher"),
    ]


# --- 1. JSON bodies ------------------------------------------------------------------------------


def test_a_json_body_beyond_the_bound_is_413_on_every_small_call(api):
    body = json.dumps({"student_id": "x", "padding": "p" * MAX_JSON}).encode()
    for method, path, token in _session_routes(api):
        r = api.request(method, path, token, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and error_code(r) == "body_too_large", (path, r.text)
        assert str(MAX_JSON) in r.json()["error"]["message"]


def test_a_body_of_another_type_is_bounded_too(api):
    """``finish`` takes an empty body: a large one of any type is refused, not read to see."""
    s = _session(api)
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], data=b"x" * (MAX_JSON + 1),
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413, r.text
    assert api.session(s)["state"] == "active"


@pytest.mark.parametrize("depth", [60_000, 100_000])
def test_deeply_nested_json_is_400_on_every_json_call(api, depth):
    """Nesting within a call's bound is a 400; 100,000 brackets are beyond the small calls'
    bound (413 there) and within the roster calls' (400)."""
    body = b"[" * depth
    for method, path, token in _session_routes(api) + _roster_routes(api):
        r = api.request(method, path, token, data=body, headers={"Content-Type": "application/json"})
        small = path.endswith(("/join", "/finish", "/violations")) or method == "PATCH"
        expected = 413 if small and depth > MAX_JSON else 400
        assert r.status_code == expected, (path, r.status_code, r.text)
        error_code(r)


@pytest.mark.parametrize("path", ["/api/login", "/api/login/select_exam", "/api/heartbeat", "/api/logout",
                                  "/api/screen_recording", "/api/screenshot", "/api/screen_frame", "/api/violation"])
def test_deeply_nested_json_is_4xx_on_every_seat_call(api, path):
    r = api.transport.at("10.77.0.1")("POST", path, data=b"[" * 60_000, headers={"Content-Type": "application/json"})
    seat_error(r, 400)
    r = api.transport.at("10.77.0.1")("POST", path, data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413), r.text
    seat_error(r, r.status_code)


# --- 2. multipart where no file is expected --------------------------------------------------------


def _seat(api: Api, addr: str) -> Seat:
    sid = unique("mp")
    api.create_exam(roster=[sid])
    seat = Seat(api, addr, sid, "Multi Part")
    assert seat.login()["status"] == "success"
    return seat


def test_a_seat_call_without_a_file_takes_no_file_and_no_large_body(api):
    seat = _seat(api, "10.77.0.2")
    assert seat.post_form("/api/heartbeat", seat.ids()).status_code == 200  # form fields are fine
    r = seat.post_form("/api/heartbeat", seat.ids(), {"junk": ("junk.bin", b"j" * 1000)})
    assert "no file" in seat_error(r, 400)
    r = seat.post_form("/api/heartbeat", {**seat.ids(), "pad": "p" * MAX_JSON})
    assert str(MAX_JSON) in seat_error(r, 413)
    r = seat.post_form("/api/logout", seat.ids(), {"big": ("big.bin", os.urandom(1024 * 1024))})
    seat_error(r, 413)
    assert seat.heartbeat().json()["status"] == "success"  # still logged in: the logout changed nothing


def test_a_seat_upload_sent_as_json_is_bounded_like_fields(api):
    seat = _seat(api, "10.77.0.3")
    r = seat.post_json("/api/screen_recording", {**seat.ids(), "sequence": 1, "pad": "p" * MAX_JSON})
    seat_error(r, 413)


def test_a_huge_multipart_heartbeat_is_refused_before_it_is_read(api, server):
    """Over Gunicorn: a 2 GB part claimed by Content-Length is answered at once, unread."""
    http = Api(HttpTransport(server))
    seat = _seat(http, "127.0.0.1")
    head = (f"POST /api/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: {2 * 1024**3}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\nConnection: close\r\n\r\n")
    # No body follows: the answer must not wait for one (bytes left unread would reset the socket).
    status, raw = raw_request(server, head)
    assert status == 413, raw[:300]
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["status"] == "error"


# --- 3. imports bounded by their expanded size, answers by MAX_REPORTED ------------------------------


def xlsx(sheet_rows: str, shared: list[str], dimension: str = "A1:B2", extra: dict | None = None) -> bytes:
    """A minimal workbook written by hand: one sheet whose rows are given as XML."""
    strings = "".join(f"<si><t>{s}</t></si>" for s in shared)
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            "</Types>"),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"),
        "xl/sharedStrings.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"{strings}</sst>"),
        "xl/worksheets/sheet1.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f'<dimension ref="{dimension}"/><sheetData>{sheet_rows}</sheetData></worksheet>'),
        **(extra or {}),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book:
        for name, text in parts.items():
            book.writestr(name, text)
    return out.getvalue()


def wide_bomb(rows: int = 100_000) -> bytes:
    """Each row one cell naming a 2,000-character shared string, under a dimension that claims
    702 columns: read-only openpyxl pads every row to it, and every row is a refused id."""
    body = "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>0</v></c></row>' for i in range(1, rows + 1))
    return xlsx(body, ["x" * 2000], dimension=f"A1:ZZ{rows}")


def _import(api: Api, data: bytes, exam_id=None, filename: str = "students.xlsx"):
    path = "/api/admin/students/import" + (f"?exam_id={exam_id}" if exam_id is not None else "")
    return api.post(path, "teacher", files={"file": (filename, data)})


def test_an_ordinary_workbook_still_imports(api):
    p = unique("wb")
    rows = "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>{2 * (i - 1)}</v></c><c r="B{i}" t="s"><v>{2 * i - 1}</v></c></row>'
                   for i in range(1, 4))
    data = xlsx(rows, ["Student ID", "Name", f"{p}1", "Wang Fang", f"{p}2", "Li Lei"], dimension="A1:B3")
    r = _import(api, data)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2 and r.json()["rejected"] == []


def test_a_workbook_that_expands_beyond_the_bound_is_413_unopened(api):
    huge = xlsx("", [], extra={"xl/styles.xml": " " * (17 * 1024 * 1024)})
    assert len(huge) < 100 * 1024
    r = _import(api, huge)
    assert r.status_code == 413 and error_code(r) == "file_too_large", r.text
    r = _import(api, xlsx("", [], extra={f"xl/pad{i}.bin": " " * (15 * 1024 * 1024) for i in range(5)}))
    assert r.status_code == 413 and "uncompressed" in r.text


def test_a_padded_workbook_answers_briefly(api):
    """100,000 refused rows of a 2,000-character id: the answer lists 100 and counts the rest."""
    r = _import(api, wide_bomb())
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["accepted"] == 0 and body["rejected_count"] == 100_000
    assert len(body["rejected"]) == 100 and body["rejected_unlisted"] == 99_900
    assert all(len(x["student_id"]) <= 81 for x in body["rejected"])
    assert len(r.content) < 64 * 1024


def test_a_csv_with_many_refused_rows_answers_briefly(api):
    text = "\n".join(f"bad id {'y' * 500}{i} name" for i in range(5000)).replace(" ", ",", 1)
    r = api.post("/api/admin/students/import", "teacher", data=("student_id,name\n" + text).encode(),
                 headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["rejected"]) == 100 and r.json()["rejected_count"] == 5000


def test_a_workbook_bomb_stays_small_in_a_worker(tmp_path):
    """Over Gunicorn: the worker's peak memory for the padded workbook (the 1 GB one before)."""
    proc, base = start_gunicorn("gunicorn-bounds-xlsx.log", workers=1)
    try:
        api = Api(HttpTransport(base))
        assert _import(api, xlsx("", [])).status_code == 200  # warm up: openpyxl loaded
        before = peak_rss_kib(worker_pid(proc.proc.pid))
        r = _import(api, wide_bomb())
        assert r.status_code == 200, r.text[:300]
        growth_mib = (peak_rss_kib(worker_pid(proc.proc.pid)) - before) / 1024
        assert growth_mib < 64, f"the worker grew by {growth_mib:.0f} MiB for a {len(wide_bomb()) // 1024} KiB workbook"
    finally:
        proc.stop()


# --- 4. a failed import changes nothing ----------------------------------------------------------


def _registry(api: Api) -> dict:
    return {s["student_id"]: s["name"] for s in api.get("/api/admin/students", "teacher").json()["students"]}


@pytest.mark.parametrize("exam_id", ["2147483000", "abc", "%D9%A3", "0", "99999999999"])
def test_an_import_for_an_unknown_or_bad_exam_changes_nothing(api, exam_id):
    p = unique("atomic")
    csv = f"student_id,name\n{p}1,Zhao Lei\n{p}2,Qian Yu\n".encode()
    r = api.post(f"/api/admin/students/import?exam_id={exam_id}", "teacher", data=csv,
                 headers={"Content-Type": "text/csv"})
    assert r.status_code in (400, 404), r.text
    error_code(r)
    assert not {f"{p}1", f"{p}2"} & set(_registry(api))


def test_an_import_for_an_exam_fills_registry_and_roster(api):
    p = unique("imp")
    exam = api.create_exam()
    r = api.post(f"/api/admin/students/import?exam_id={exam['id']}", "teacher",
                 data=f"{p}1 Zhao Lei\n{p}2 Qian Yu\n".encode(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["roster"]["added"]) == [f"{p}1", f"{p}2"]
    assert "students" not in r.json()  # the answer does not echo the whole file
    assert _registry(api)[f"{p}1"] == "Zhao Lei"


# --- 5. dates in range ---------------------------------------------------------------------------


def test_a_violation_time_past_the_range_is_400(api):
    s = _session(api)
    for occurred in (253402300800000, 10**20, -1):
        r = api.post(f"/api/sessions/{s['session_id']}/violations", s["token"],
                     json={"reason": "tab", "occurred_at": occurred})
        assert r.status_code == 400 and error_code(r) == "invalid_body", r.text
    ok = api.post(f"/api/sessions/{s['session_id']}/violations", s["token"], json={"reason": "tab", "occurred_at": 1700000000000})
    assert ok.status_code == 201 and ok.json()["occurred_at"].startswith("2023-11-14")


@pytest.mark.parametrize("captured", ["253402300800000", "99999999999999999999", "-1", "1_000", "\u0663", "1e3", ""])
def test_an_x_captured_at_out_of_range_is_400_on_every_upload(api, captured):
    s = _session(api)
    r = api.upload(s, 0, WEBM_HEAD, "video/webm", **{"X-Captured-At": captured})
    assert r.status_code == 400 and error_code(r) == "invalid_header", r.text
    r = api.post(f"/api/sessions/{s['session_id']}/screenshots", s["token"], data=png_image(),
                 headers={"Content-Type": "image/png", "X-Captured-At": captured})
    assert r.status_code == 400 and error_code(r) == "invalid_header", r.text
    assert api.session(s)["segments"] == 0


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00",
                                  "1969-12-31T23:59:59+00:00", "9999-12-31T23:59:59"])
def test_an_exam_time_out_of_range_is_400(api, when):
    body = {"title": "t", "starts_at": when, "ends_at": "2030-01-01T00:00:00+00:00"}
    r = api.post("/api/exams", "teacher", json=body)
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text
    assert "starts_at" in r.json()["error"]["message"]
    exam = api.create_exam()
    r = api.patch(f"/api/exams/{exam['id']}", json={"ends_at": when})
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59",
                                   "9999-12-31T23:59:59-14:00", "99999999999999"])
def test_a_seat_timestamp_out_of_range_is_400(api, stamp, tmp_path):
    seat = _seat(api, "10.77.0.4")
    seat_error(seat.send_recording(1, "1.webm", WEBM_HEAD, timestamp=stamp), 400)
    fields = {**seat.ids(), "reason": "tab", "timestamp": stamp}
    seat_error(seat.post_form("/api/violation", fields), 400)
    fields = {**seat.ids(), "timestamp": stamp}
    seat_error(seat.post_form("/api/screenshot", fields, {"screenshot": ("s.png", png_image(), "image/png")}), 400)


# --- 6. seqs: at most MAX_AHEAD past what a run stored; missing as ranges -------------------------


def test_a_seq_far_ahead_is_refused_and_gaps_are_ranges(api):
    s = _session(api)
    r = api.upload(s, 999_999, WEBM_HEAD, "video/webm")
    assert r.status_code == 400 and error_code(r) == "seq_too_far_ahead", r.text
    assert api.upload(s, 1001, WEBM_HEAD, "video/webm").status_code == 400
    assert api.upload(s, 1000, WEBM_HEAD, "video/webm").status_code == 201
    assert api.upload(s, 1002, MP4_HEAD, "video/mp4").status_code == 400  # 1 stored: at most 1001
    assert api.upload(s, 1001, MP4_HEAD, "video/mp4").status_code == 201
    assert api.upload(s, 1003, MP4_HEAD + b"3", "video/mp4").status_code == 400
    assert api.upload(s, 1002, MP4_HEAD + b"2", "video/mp4").status_code == 201
    assert api.upload(s, 1, WEBM_HEAD, "video/webm").status_code == 201
    view = api.session(s)
    assert view["missing"] == [[0, 0], [2, 999]] and view["next_seq"] == 1003
    assert len(json.dumps(view)) < 4096


def test_a_finish_far_ahead_is_refused(api):
    s = _session(api)
    r = api.post(f"/api/sessions/{s['session_id']}/finish", s["token"], json={"last_seq": 999_999})
    assert r.status_code == 400 and error_code(r) == "seq_too_far_ahead", r.text
    assert api.session(s)["state"] == "active"
    api.finish(s, last_seq=1000)
    assert api.session(s)["state"] == "finished"


def test_a_seat_sequence_far_ahead_is_refused(api):
    seat = _seat(api, "10.77.0.5")
    seat_error(seat.send_recording(999_999, "x.webm", WEBM_HEAD), 400)
    assert seat.send_recording(1000, "x.webm", WEBM_HEAD).status_code == 200
    seat_error(seat.send_recording(2002, "y.webm", WEBM_HEAD + b"y"), 400)
    view = api.session(api.get(f"/api/exams/{seat.exam_id}/sessions", "teacher").json()["sessions"][0]["id"])
    assert view["runs"][0]["missing"] == [[1, 999]]


# --- 7. uploads checked by their content ----------------------------------------------------------


@pytest.mark.parametrize("data,media_type", [(HTML, "video/webm"), (HTML, "video/mp4"), (b'{"a": 1}', "video/mp2t"),
                                             (png_image(), "video/webm"), (MP4_HEAD, "video/webm"),
                                             (WEBM_HEAD, "video/mp4"), (WEBM_HEAD, "video/mp2t")],
                         ids=["html-webm", "html-mp4", "json-ts", "png-webm", "mp4-webm", "webm-mp4", "webm-ts"])
def test_a_segment_whose_bytes_are_not_its_type_is_415_and_stored_nowhere(api, data, media_type):
    s = _session(api)
    r = api.upload(s, 0, data, media_type)
    assert r.status_code == 415 and error_code(r) == "content_mismatch", r.text
    assert api.session(s)["segments"] == 0
    assert stored_files(s) == []


@pytest.mark.parametrize("data,media_type", [(WEBM_HEAD, "video/webm"), (MP4_HEAD, "video/mp4"),
                                             (b"\x47" + os.urandom(187), "video/mp2t"),
                                             (b"\xa3" + os.urandom(4095), "video/webm")],
                         ids=["webm", "mp4", "ts", "webm-continuation"])
def test_segments_of_their_type_and_binary_continuations_are_stored(api, data, media_type):
    """A time-sliced recorder's later chunks begin mid-stream: binary, but no signature."""
    s = _session(api)
    assert api.upload(s, 0, data, media_type).status_code == 201


def test_a_screenshot_that_is_no_image_is_415_on_both_doors(api):
    s = _session(api)
    r = api.post(f"/api/sessions/{s['session_id']}/screenshots", s["token"], data=HTML,
                 headers={"Content-Type": "image/png"})
    assert r.status_code == 415, r.text
    seat = _seat(api, "10.77.0.6")
    seat_error(seat.screenshot(HTML), 415)
    seat_error(seat.violation("tab", HTML), 415)
    seat_error(seat.send_recording(1, "1.webm", HTML), 415)


# --- memory of a worker given a huge JSON body ------------------------------------------------------


def test_a_huge_json_body_never_reaches_memory(tmp_path):
    """Over Gunicorn: 128 MB of JSON with its length, and 128 MB chunked, to join: 413 each, and
    the worker's peak memory does not follow the body (it took 1.4 GB for 500 MB before)."""
    proc, base = start_gunicorn("gunicorn-bounds-json.log", workers=1)
    try:
        api = Api(HttpTransport(base))
        exam = api.create_exam(roster=["huge"])
        api.join(exam["id"], "huge")  # warm up the worker
        before = peak_rss_kib(worker_pid(proc.proc.pid))
        sparse = tmp_path / "body.json"
        with open(sparse, "wb") as fh:
            fh.write(b'{"student_id": "')
            fh.truncate(128 * 1024 * 1024)
        url = f"{base}/api/exams/{exam['id']}/join"
        with open(sparse, "rb") as fh:
            r = requests.post(url, data=fh, headers={"Content-Type": "application/json"}, timeout=120)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text

        def chunks():
            yield b'{"student_id": "'
            for _ in range(128):
                yield b"a" * (1024 * 1024)

        r = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=120)
        assert r.status_code == 413, r.text
        growth_mib = (peak_rss_kib(worker_pid(proc.proc.pid)) - before) / 1024
        assert growth_mib < 32, f"the worker grew by {growth_mib:.0f} MiB for a 128 MB JSON body"
    finally:
        proc.stop()
