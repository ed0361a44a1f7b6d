"""Rosters as the original server took them (text, one ``student_id name`` per line, a name alone
gets a generated id), and the teacher's view of the whole roster: who never logged in, who is
there, from where, and what they sent."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import event

from tests.helpers import error_code, png_image, unique


def generated(name: str) -> str:
    """The id a name-only line gets, as documented: ``gen-`` and 8 hex digits of its SHA-256."""
    return "gen-" + hashlib.sha256(" ".join(name.split()).casefold().encode()).hexdigest()[:8]


def registry(api) -> dict:
    return {s["student_id"]: s["name"] for s in api.get("/api/admin/students", "teacher").json()["students"]}


def roster_view(api, exam_id: int) -> dict:
    r = api.get(f"/api/exams/{exam_id}/roster", "teacher")
    assert r.status_code == 200, r.text
    assert "warnings" in r.json()
    return {row["student_id"]: row for row in r.json()["roster"]}


# --- text rosters -------------------------------------------------------------------------------


def test_text_roster_import_with_name_only_lines(api):
    p = unique("t")
    chinese, english = f"张三 {p}", f"Ada King {p}"  # no id: a name alone, or a first word that is no id
    text = (
        "学号\t姓名\n"  # a header line is not a student
        f"{p}1 Ada Lovelace\n"
        f"{p}2\tGrace  Brewster Hopper\n"
        f"{chinese}\n"
        "\n"
        f"{english}\n"
        f"{chinese}\n"  # a second student of the same name
        f"{p}1 Again\n"
        f"{p}3 {'x' * 201}\n"
    )
    r = api.post("/api/admin/students/import", "teacher", data=text.encode("utf-8"),
                 headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 5 and body["created"] == 5
    assert [(x["row"], x["student_id"]) for x in body["rejected"]] == [(8, f"{p}1"), (9, f"{p}3")]
    assert body["generated"] == [
        {"row": 4, "student_id": generated(chinese), "name": chinese},
        {"row": 6, "student_id": generated(english), "name": english},
        {"row": 7, "student_id": generated(chinese) + "-2", "name": chinese},
    ]
    listed = registry(api)
    assert listed[f"{p}1"] == "Ada Lovelace" and listed[f"{p}2"] == "Grace Brewster Hopper"
    assert listed[generated(chinese)] == chinese and listed[generated(english)] == english

    # Again as a .txt file onto an exam's roster: the same names get the same ids, nothing new.
    exam = api.create_exam(roster=[])
    files = {"file": ("roster.txt", text.encode("utf-8"), "text/plain")}
    r = api.post(f"/api/admin/students/import?exam_id={exam['id']}", "teacher", files=files)
    assert r.status_code == 200 and r.json()["created"] == 0, r.text
    assert generated(chinese) + "-2" in roster_view(api, exam["id"])


@pytest.mark.parametrize("content_type,filename", [("text/plain", None), ("application/octet-stream", "list.txt")])
def test_csv_stays_csv_whatever_its_type(api, content_type, filename):
    p = unique("c")
    text = f"Name,Student ID\nLin Ma,{p}1\n"  # a header in another order: only the CSV reading knows it
    if filename:
        r = api.post("/api/admin/students/import", "teacher", files={"file": (filename, text.encode(), content_type)})
    else:
        r = api.post("/api/admin/students/import", "teacher", data=text.encode(), headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["generated"] == []
    assert registry(api)[f"{p}1"] == "Lin Ma"


def test_exam_creation_and_roster_addition_with_text(api):
    p = unique("e")
    name = f"李四 {p}"
    exam = api.create_exam(roster=None)
    body = {"title": "Text roster", "starts_at": exam["starts_at"], "ends_at": exam["ends_at"],
            "roster_text": f"{p}1 Ada Lovelace\n{name}\n"}
    r = api.post("/api/exams", "teacher", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["generated"] == [{"row": 2, "student_id": generated(name), "name": name}]
    view = roster_view(api, created["id"])
    assert {sid: row["name"] for sid, row in view.items()} == {f"{p}1": "Ada Lovelace", generated(name): name}

    r = api.post(f"/api/exams/{created['id']}/roster", "teacher", json={"students_text": f"{p}2\tAlan Turing\n"})
    assert r.status_code == 200 and r.json()["added"] == [f"{p}2"] and r.json()["generated"] == [], r.text
    assert roster_view(api, created["id"])[f"{p}2"]["name"] == "Alan Turing"


@pytest.mark.parametrize(
    "extra,said",
    [
        ({"roster_text": "\n2024001 A\n2024001 B\n"}, "line 3"),  # a refused line refuses the whole body
        ({"roster_text": "2024001 " + "x" * 201}, "line 1"),
        ({"roster_text": "2024001 A", "roster": ["2024002"]}, "not both"),
        ({"roster_text": ["2024001 A"]}, "roster_text"),
    ],
)
def test_bad_roster_text_creates_nothing(api, extra, said):
    exam = api.create_exam()
    before = len(api.get("/api/exams", "teacher").json()["exams"])
    body = {"title": "Refused", "starts_at": exam["starts_at"], "ends_at": exam["ends_at"], **extra}
    r = api.post("/api/exams", "teacher", json=body)
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text
    assert said in r.json()["error"]["message"]
    assert len(api.get("/api/exams", "teacher").json()["exams"]) == before
    r = api.post(f"/api/exams/{exam['id']}/roster", "teacher", json={"students_text": "\n \n"})
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text


# --- the teacher's view of the roster ------------------------------------------------------------


def test_roster_view_shows_who_never_logged_in_and_what_others_sent(api):
    p = unique("v")
    absent, present, walked_in = f"{p}1", f"{p}2", f"{p}3"
    exam = api.create_exam(roster=[{"student_id": absent, "name": "Never Came"},
                                   {"student_id": present, "name": "Was There"}, walked_in])
    api.post("/api/admin/students", "teacher", json={"students": [{"student_id": walked_in, "name": "Walk In"}]})
    s = api.at("127.0.0.7").join(exam["id"], present)
    assert api.upload(s, 0, b"\0segment zero").status_code == 201
    assert api.screenshot(s, png_image()).status_code == 201
    r = api.post(f"/api/sessions/{s['session_id']}/violations", s["token"], json={"reason": "left the window"})
    assert r.status_code == 201, r.text
    # A student whose session outlives their place on the roster is still shown, as not on it.
    api.join(exam["id"], walked_in)
    assert api.delete(f"/api/exams/{exam['id']}/roster/{walked_in}").status_code == 204

    view = roster_view(api, exam["id"])
    assert set(view) == {absent, present, walked_in}
    assert view[absent] == {
        "student_id": absent, "name": "Never Came", "on_roster": True, "session_id": None,
        "state": "not_logged_in", "presence": "offline", "client_addr": None, "last_seen": None,
        "segments": 0, "screenshots": 0, "violations": 0,
    }
    row = view[present]
    assert (row["on_roster"], row["session_id"], row["state"], row["presence"], row["client_addr"]) == (
        True, s["session_id"], "active", "online", "127.0.0.7")
    assert (row["segments"], row["screenshots"], row["violations"]) == (1, 1, 1)
    assert row["last_seen"] is not None
    assert view[walked_in]["on_roster"] is False and view[walked_in]["name"] == "Walk In"
    assert view[walked_in]["state"] == "active" and view[walked_in]["segments"] == 0

    assert api.get(f"/api/exams/{exam['id']}/roster").status_code == 401
    assert api.get("/api/exams/99999999/roster", "teacher").status_code == 404


def count_queries(api, path: str) -> int:
    from proctor.db import engine

    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(engine(), "before_cursor_execute", count)
    try:
        assert api.get(path, "teacher").status_code == 200
    finally:
        event.remove(engine(), "before_cursor_execute", count)
    return len(statements)


def test_roster_view_costs_the_same_for_5_or_60_students(api):
    costs = []
    for size in (5, 60):
        p = unique(f"n{size}-")
        exam = api.create_exam(roster=[f"{p}{i}" for i in range(size)])
        for i in range(0, size, 2):  # half of them logged in and sent something
            s = api.join(exam["id"], f"{p}{i}")
            api.upload(s, 0, b"\0x")
        costs.append(count_queries(api, f"/api/exams/{exam['id']}/roster"))
    assert costs[0] == costs[1] and costs[0] > 0, costs
