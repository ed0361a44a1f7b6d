"""Administration on the token API: students and their import, rosters, exam update and delete,
violations, screenshots and login history (in-process, database under test, real Redis)."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import DATA, error_code, png_image, silence, unique

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# --- students registry and import ---------------------------------------------------------------


def test_csv_import_reports_accepted_and_rejected(api):
    p = unique("csv")
    text = (
        "student_id,name\n"
        f"{p}1,Ada Lovelace\n"
        f"{p}2,\n"
        ",No Id\n"
        "bad id,Has Space\n"
        f"{p}1,Twice\n"
        "\n"
        f"{p}3,{'x' * 201}\n"
        f"{p}4,Émile Zola\n"
    )
    r = api.post("/api/admin/students/import", "teacher", data=text.encode("utf-8-sig"),
                 headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["created"] == 3
    assert [(x["row"], x["reason"].split()[0]) for x in body["rejected"]] == [
        (4, "student_id"), (5, "student_id"), (6, "student_id"), (8, "name")]
    assert "twice" in body["rejected"][2]["reason"]
    listed = {s["student_id"]: s["name"] for s in api.get("/api/admin/students", "teacher").json()["students"]}
    assert listed[f"{p}1"] == "Ada Lovelace" and listed[f"{p}2"] is None and listed[f"{p}4"] == "Émile Zola"

    # The legacy seat's form is prefilled from the registry, once the student sits an exam.
    api.create_exam(roster=[f"{p}4"])
    r = api.get(f"/api/students/{p}4")
    assert r.json() == {"status": "success", "student_id": f"{p}4", "student_name": "Émile Zola"}


def test_xlsx_import_into_a_roster(api):
    from openpyxl import Workbook

    p = unique("xlsx")
    exam = api.create_exam()
    book = Workbook()
    sheet = book.active
    sheet.append(["Name", "Student ID"])  # header in any order
    sheet.append(["Alan Turing", 20230001])  # a numeric id, as spreadsheets store them
    sheet.append(["Grace Hopper", f"{p}b"])
    sheet.append(["No Id", None])
    buf = io.BytesIO()
    book.save(buf)
    files = {"file": ("students.xlsx", buf.getvalue(), XLSX)}
    r = api.post(f"/api/admin/students/import?exam_id={exam['id']}", "teacher", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and [x["row"] for x in body["rejected"]] == [4]
    assert sorted(body["roster"]["added"]) == sorted(["20230001", f"{p}b"])
    roster = api.get(f"/api/exams/{exam['id']}/roster", "teacher").json()["roster"]
    assert {(e["student_id"], e["name"]) for e in roster} == {("20230001", "Alan Turing"), (f"{p}b", "Grace Hopper")}


@pytest.mark.parametrize(
    "data,content_type,status",
    [
        (b"PK\x03\x04 not really a zip", XLSX, 400),
        (b"\x00\x01binary", "image/png", 415),
    ],
)
def test_bad_import_files(api, data, content_type, status):
    before = len(api.get("/api/admin/students", "teacher").json()["students"])
    r = api.post("/api/admin/students/import", "teacher", data=data, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert len(api.get("/api/admin/students", "teacher").json()["students"]) == before


def test_registry_add_delete_and_auth(api):
    sid = unique("reg")
    assert api.post("/api/admin/students", json={"students": [sid]}).status_code == 401
    r = api.post("/api/admin/students", "teacher", json={"students": [{"student_id": sid, "name": "Reg"}]})
    assert (r.json()["created"], r.json()["updated"]) == (1, 0), r.text
    r = api.post("/api/admin/students", "teacher", json={"students": [{"student_id": sid, "name": "Renamed"}]})
    assert (r.json()["created"], r.json()["updated"]) == (0, 1), r.text
    names = {e["student_id"]: e["name"] for e in api.get("/api/admin/students", "teacher").json()["students"]}
    assert names[sid] == "Renamed"
    assert api.delete(f"/api/admin/students/{sid}").status_code == 204
    assert api.delete(f"/api/admin/students/{sid}").status_code == 404


# --- rosters and overlaps -----------------------------------------------------------------------


def test_roster_add_remove_and_overlap_warning(api):
    sid, other = unique("overlap"), unique("named")
    first = api.create_exam(title="Morning", roster=[sid])
    assert first["warnings"] == []
    second = api.create_exam(title="Also morning", start_in_s=600, roster=[sid, sid + "x"])
    assert [(w["student_id"], w["exam_id"]) for w in second["warnings"]] == [(sid, first["id"])]

    later = api.create_exam(title="Tomorrow", start_in_s=86_400)
    r = api.post(f"/api/exams/{later['id']}/roster", "teacher", json={"students": [sid, {"student_id": other, "name": "N"}]})
    assert r.status_code == 200 and sorted(r.json()["added"]) == sorted([sid, other]) and r.json()["warnings"] == []
    r = api.post(f"/api/exams/{later['id']}/roster", "teacher", json={"students": [sid]})
    assert r.json()["added"] == [] and r.json()["already_on_roster"] == [sid]

    # Moving "Tomorrow" onto the morning makes the overlap appear.
    now = datetime.now(timezone.utc)
    r = api.patch(f"/api/exams/{later['id']}", json={"starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat()})
    assert r.status_code == 200 and {w["exam_id"] for w in r.json()["warnings"]} == {first["id"], second["id"]}

    assert api.delete(f"/api/exams/{later['id']}/roster/{sid}").status_code == 204
    assert api.delete(f"/api/exams/{later['id']}/roster/{sid}").status_code == 404
    assert [e["student_id"] for e in api.get(f"/api/exams/{later['id']}/roster", "teacher").json()["roster"]] == [other]


# --- exam update and delete ---------------------------------------------------------------------


def test_update_exam(api):
    exam = api.create_exam(title="Draft", start_in_s=3600)
    new_end = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=30)
    r = api.patch(f"/api/exams/{exam['id']}", json={"title": "Final", "ends_at": new_end.isoformat(),
                                                 "settings": {"disable_new_tabs": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["title"] == "Final" and datetime.fromisoformat(body["ends_at"]) == new_end
    assert body["settings"] == {"disable_new_tabs": True} and body["status"] == "pending"
    r = api.patch(f"/api/exams/{exam['id']}", json={"settings": {"delay_min": 10}})
    assert r.json()["settings"] == {"disable_new_tabs": True, "delay_min": 10}


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": None},
        {"ends_at": "2000-01-01T00:00:00+00:00"},  # before starts_at
        {"starts_at": "tomorrow"},
        {"settings": {"delay_min": -1}},
        {"settings": {"delay_min": "5"}},
        [1],
    ],
)
def test_update_exam_bad_bodies(api, body):
    exam = api.create_exam(title="Keep")
    r = api.patch(f"/api/exams/{exam['id']}", json=body)
    assert r.status_code == 400, r.text
    detail = api.get(f"/api/exams/{exam['id']}", "teacher").json()
    assert detail["title"] == "Keep" and detail["ends_at"] == exam["ends_at"]


def test_completed_exam_times_are_fixed_and_auth(api):
    exam = api.create_exam(start_in_s=-7200, length_s=3600)
    r = api.patch(f"/api/exams/{exam['id']}", json={"ends_at": datetime.now(timezone.utc).isoformat()})
    assert r.status_code == 409 and error_code(r) == "exam_completed"
    assert api.patch(f"/api/exams/{exam['id']}", json={"title": "x"}, token=None).status_code == 401
    assert api.delete(f"/api/exams/{exam['id']}", token=None).status_code == 401
    assert api.patch("/api/exams/999999", json={"title": "x"}).status_code == 404


def test_delete_exam_refused_while_files_exist_unless_forced(api):
    exam = api.create_exam()
    s = api.join(exam["id"], "deleteme")
    assert api.upload(s, 0, b"\0segment bytes").status_code == 201
    r = api.delete(f"/api/exams/{exam['id']}")
    assert r.status_code == 409 and error_code(r) == "has_recordings"
    assert api.get(f"/api/exams/{exam['id']}", "teacher").status_code == 200

    r = api.delete(f"/api/exams/{exam['id']}?force=1")
    assert r.status_code == 200 and r.json()["files_removed"]["segments"] == 1
    assert api.get(f"/api/exams/{exam['id']}", "teacher").status_code == 404
    assert not (DATA / "segments" / str(s["session_id"])).exists()
    assert api.post(f"/api/sessions/{s['session_id']}/heartbeat", s["token"]).status_code in (401, 404)

    empty = api.create_exam()
    assert api.delete(f"/api/exams/{empty['id']}").status_code == 200


# --- violations and screenshots (token API) ------------------------------------------------------


def test_token_screenshots_and_violations(api):
    exam = api.create_exam()
    s = api.join(exam["id"], unique("viol"))
    png = png_image()
    r = api.screenshot(s, png)
    assert r.status_code == 201, r.text
    periodic = r.json()
    assert periodic["kind"] == "periodic" and periodic["media_type"] == "image/png" and periodic["size"] == len(png)
    shot = api.screenshot(s, png, kind="violation").json()

    r = api.post(f"/api/sessions/{s['session_id']}/violations", s["token"],
                 json={"reason": "switched window", "screenshot_id": shot["id"], "occurred_at": 1700000000000})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["reason"] == "switched window" and v["screenshot"]["id"] == shot["id"] and v["via"] == "token"
    assert v["occurred_at"].startswith("2023-11-14T22:13:20")
    assert api.post(f"/api/sessions/{s['session_id']}/violations", s["token"], json={"reason": "no shot"}).status_code == 201

    listed = api.get(f"/api/exams/{exam['id']}/violations", "teacher").json()["violations"]
    assert [x["reason"] for x in listed] == ["switched window", "no shot"]
    img = api.get(listed[0]["screenshot"]["url"], "teacher")
    assert img.status_code == 200 and img.content == png
    assert api.get(listed[0]["screenshot"]["url"], s["token"]).status_code == 403  # teacher only
    shots = api.get(f"/api/sessions/{s['session_id']}/screenshots", "teacher").json()["screenshots"]
    assert [x["kind"] for x in shots] == ["periodic", "violation"]


def _nothing_stored(api, s: dict) -> None:
    assert api.get(f"/api/sessions/{s['session_id']}/screenshots", "teacher").json()["screenshots"] == []
    assert api.get(f"/api/sessions/{s['session_id']}/violations", "teacher").json()["violations"] == []
    d = DATA / "screenshots" / str(s["session_id"])
    assert not d.exists() or list(d.iterdir()) == []


BIG_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024)


@pytest.mark.parametrize(
    "data,content_type,kind,status",
    [
        (b"GIF89a not allowed", "image/png", None, 415),  # the magic bytes decide, not the header
        ("png", "image/gif", None, 415),
        (b"", "image/png", None, 400),
        ("png", "image/png", "selfie", 400),
        (BIG_PNG, "image/png", None, 413),
    ],
)
def test_bad_screenshots_store_nothing(api, data, content_type, kind, status):
    exam = api.create_exam()
    s = api.join(exam["id"], unique("badshot"))
    r = api.screenshot(s, png_image() if data == "png" else data, content_type, kind=kind)
    assert r.status_code == status, r.text
    assert error_code(r)
    _nothing_stored(api, s)


def test_a_screenshot_on_another_session_is_refused(api):
    exam = api.create_exam()
    s, other = api.join(exam["id"], unique("mine")), api.join(exam["id"], unique("other"))
    r = api.screenshot({"session_id": s["session_id"], "token": other["token"]}, png_image())
    assert r.status_code == 403 and error_code(r) == "forbidden"
    _nothing_stored(api, s)


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "x", "screenshot_id": "foreign"},
                                  {"reason": "x", "occurred_at": "now"}])
def test_bad_violations_store_nothing(api, body):
    exam = api.create_exam()
    s = api.join(exam["id"], unique("badviol"))
    if body.get("screenshot_id") == "foreign":  # another student's screenshot
        other = api.join(exam["id"], unique("other"))
        body = {**body, "screenshot_id": api.screenshot(other, png_image()).json()["id"]}
    r = api.post(f"/api/sessions/{s['session_id']}/violations", s["token"], json=body)
    assert r.status_code == 400, r.text
    assert error_code(r)
    _nothing_stored(api, s)


# --- login history (token API) -------------------------------------------------------------------


def test_token_login_history(api):
    sid = unique("hist")
    exam = api.create_exam()
    first = api.join(exam["id"], sid)
    silence(first["session_id"])
    token = api.join(exam["id"], sid)["token"]  # a restarted client, same address: not flagged
    # The same student from another machine while the first is online: refused, and flagged.
    assert api.at("127.0.0.71").try_join(exam["id"], sid).status_code == 409
    assert api.post(f"/api/sessions/{first['session_id']}/finish", token, json={}).status_code == 202

    logins = api.get(f"/api/exams/{exam['id']}/logins?student_id={sid}", "teacher").json()["logins"]
    assert [(e["kind"], e["client_addr"], e["flagged"], e["via"]) for e in logins] == [
        ("login", "127.0.0.1", False, "token"),
        ("rejoin", "127.0.0.1", False, "token"),
        ("refused", "127.0.0.71", True, "token"),
        ("logout", "127.0.0.1", False, "token"),
    ]
    flagged = api.get(f"/api/exams/{exam['id']}/logins?flagged=1", "teacher").json()["logins"]
    assert len(flagged) == 1
    assert api.get("/api/exams/999999/logins", "teacher").status_code == 404
