"""Changing exams from the console, in this process (Flask's test client): edit, extend, end now,
delete and copy an exam, paste or upload a roster (text, CSV, XLSX) and read its report row by row,
take a student off the roster, search and import the student registry. Each change is read back
through the token API; invigilators, signed-out browsers and posts without the CSRF token change
nothing; bad input answers a 4xx page and changes nothing."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import Seat, unique
from tests.test_console import HTML, JSON, exam_count, new_account, set_invigilator_password, sign_in, token_of
from tests.test_console import invigilator_of
from tests.test_console_i18n import visible_words, words

PICKER = "%Y-%m-%dT%H:%M"


@pytest.fixture(scope="module")
def office(app):
    """One teacher signed in for the module (sign-ins count against 127.0.0.1's budget)."""
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    return client


def post(client, path: str, page: str | None = None, files: dict | None = None, **fields):
    """A form posted as the page at ``page`` (default: the exam list) would post it."""
    data = {**fields, **(files or {}), "csrf_token": token_of(client, page or "/exams")}
    return client.post(path, data=data, headers=HTML, content_type="multipart/form-data" if files else None)


def exam_of(api, exam_id: int) -> dict:
    answer = api.get(f"/api/exams/{exam_id}", "teacher")
    return answer.json() if answer.status_code == 200 else {"status_code": answer.status_code}


def roster_ids(api, exam_id: int) -> set[str]:
    rows = api.get(f"/api/exams/{exam_id}/roster", "teacher").json()["roster"]
    return {r["student_id"] for r in rows if r["on_roster"]}


def office_time(moment: datetime) -> str:
    from proctor.config import settings

    return moment.astimezone(settings().timezone).strftime(PICKER)


def at(picker_value: str) -> datetime:
    """A picker's value (the exam office's time) as an aware time."""
    from proctor.config import settings

    return datetime.strptime(picker_value, PICKER).replace(tzinfo=settings().timezone)


def report_rows(page: str) -> list[tuple[int, str, str]]:
    """(line, outcome, student id) of each row of an import's report, in order."""
    found = re.findall(r'<tr data-outcome="(\w+)"[^>]*><td class="n">(\d+)</td>\s*<td><code>([^<]*)</code>', page)
    return [(int(line), outcome, student) for outcome, line, student in found]


def xlsx(rows: list[list]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- the exam -----------------------------------------------------------------------------------


def test_edit_changes_the_title_and_times(office, api):
    exam = api.create_exam(title=unique("Edit me "), start_in_s=3600)
    page = office.get(f"/exams/{exam['id']}/edit", headers=HTML).get_data(as_text=True)
    assert f'value="{office_time(datetime.fromisoformat(exam["starts_at"]))}"' in page  # prefilled
    title = unique("Edited ")
    answer = post(office, f"/exams/{exam['id']}/edit", title=title, starts_at="2031-03-01T09:00",
                  ends_at="2031-03-01T11:30")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/exams/{exam['id']}#exam-changes"
    now = exam_of(api, exam["id"])
    assert now["title"] == title
    assert datetime.fromisoformat(now["starts_at"]) == at("2031-03-01T09:00")
    assert datetime.fromisoformat(now["ends_at"]) == at("2031-03-01T11:30")


def test_edit_refusals_change_nothing(office, api):
    exam = api.create_exam(title=unique("Kept "), start_in_s=3600)
    before = exam_of(api, exam["id"])
    backwards = post(office, f"/exams/{exam['id']}/edit", title="x", starts_at="2031-03-01T11:00",
                     ends_at="2031-03-01T09:00")
    assert backwards.status_code == 400 and 'id="problem"' in backwards.get_data(as_text=True)
    nonsense = post(office, f"/exams/{exam['id']}/edit", title="x", starts_at="soon", ends_at="2031-03-01T09:00")
    assert nonsense.status_code == 400 and "starts_at" in nonsense.get_data(as_text=True)
    untitled = post(office, f"/exams/{exam['id']}/edit", title="", starts_at="2031-03-01T09:00",
                    ends_at="2031-03-01T10:00")
    assert untitled.status_code == 400 and "Give the exam a title." in untitled.get_data(as_text=True)
    assert exam_of(api, exam["id"]) == before
    assert post(office, "/exams/999999/edit", title="x", starts_at="2031-03-01T09:00",
                ends_at="2031-03-01T10:00").status_code == 404


def test_an_ended_exam_keeps_its_times_but_its_title_may_be_corrected(office, api):
    exam = api.create_exam(title=unique("Over "), start_in_s=-7200, length_s=3600)
    page = office.get(f"/exams/{exam['id']}/edit", headers=HTML).get_data(as_text=True)
    starts, ends = (re.search(rf'id="{f}"[^>]*value="([^"]+)"', page).group(1) for f in ("starts_at", "ends_at"))
    title = unique("Corrected ")
    assert post(office, f"/exams/{exam['id']}/edit", title=title, starts_at=starts, ends_at=ends).status_code == 303
    assert exam_of(api, exam["id"])["title"] == title
    moved = post(office, f"/exams/{exam['id']}/edit", title=title, starts_at=starts, ends_at="2099-01-01T10:00")
    assert moved.status_code == 409 and "completed" in moved.get_data(as_text=True)
    assert exam_of(api, exam["id"])["ends_at"] == exam["ends_at"]


def test_extend_moves_the_end_and_the_seats_hear_it(office, api, suite_settings):
    student = unique("ext")
    exam = api.create_exam(title=unique("Extend "), roster=[{"student_id": student, "name": "Ext Ender"}])
    seat = Seat(api, "127.0.0.91", student, "Ext Ender")
    assert seat.login()["status"] == "success"
    answer = post(office, f"/exams/{exam['id']}/extend", f"/exams/{exam['id']}", minutes="25")
    assert answer.status_code == 303
    new_end = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=25)
    assert datetime.fromisoformat(exam_of(api, exam["id"])["ends_at"]) == new_end
    heard = seat.heartbeat().json()
    local_end = new_end.astimezone(suite_settings.timezone).replace(tzinfo=None, microsecond=0)
    assert datetime.fromisoformat(heard["end_time"]) == local_end, heard
    page = office.get(f"/exams/{exam['id']}", headers=HTML).get_data(as_text=True)
    assert new_end.astimezone(suite_settings.timezone).strftime("%Y-%m-%d %H:%M") in page

    for minutes in ("0", "-5", "abc", "", "1441", "9" * 30, "1e3", "٣"):  # int() reads "٣" as 3
        refused = post(office, f"/exams/{exam['id']}/extend", f"/exams/{exam['id']}", minutes=minutes)
        assert refused.status_code == 400 and 'id="problem"' in refused.get_data(as_text=True), minutes
    assert datetime.fromisoformat(exam_of(api, exam["id"])["ends_at"]) == new_end


def test_an_ended_exam_is_not_extended(office, api):
    exam = api.create_exam(start_in_s=-7200, length_s=3600)
    refused = post(office, f"/exams/{exam['id']}/extend", f"/exams/{exam['id']}", minutes="10")
    assert refused.status_code == 409 and "completed" in refused.get_data(as_text=True)
    assert exam_of(api, exam["id"])["ends_at"] == exam["ends_at"]


def test_end_now_needs_the_box_ticked_then_ends_the_exam(office, api):
    exam = api.create_exam(roster=["e1"])
    joined = api.join(exam["id"], "e1")
    unticked = post(office, f"/exams/{exam['id']}/end", f"/exams/{exam['id']}")
    assert unticked.status_code == 400 and "Tick the box to confirm." in unticked.get_data(as_text=True)
    assert exam_of(api, exam["id"])["status"] == "active"
    answer = post(office, f"/exams/{exam['id']}/end", f"/exams/{exam['id']}", confirm="y")
    assert answer.status_code == 303
    assert exam_of(api, exam["id"])["status"] == "completed"
    assert api.session(joined)["state"] in ("closing", "finished", "merging", "merged", "partial", "failed")
    page = office.get(f"/exams/{exam['id']}", headers=HTML).get_data(as_text=True)
    assert 'id="end-exam"' not in page and 'id="extend"' not in page


def test_delete_keeps_the_guard_of_the_api(office, api):
    exam = api.create_exam()
    session = api.join(exam["id"], unique("del"))
    assert api.upload(session, 0, b"\0segment bytes").status_code == 201
    unticked = post(office, f"/exams/{exam['id']}/delete", f"/exams/{exam['id']}")
    assert unticked.status_code == 400 and exam_of(api, exam["id"])["id"] == exam["id"]
    guarded = post(office, f"/exams/{exam['id']}/delete", f"/exams/{exam['id']}", confirm="y")
    text = guarded.get_data(as_text=True)
    assert guarded.status_code == 409 and 'id="problem"' in text and "archive it first" in text
    assert exam_of(api, exam["id"])["id"] == exam["id"]

    forced = post(office, f"/exams/{exam['id']}/delete", f"/exams/{exam['id']}", confirm="y", with_files="y")
    assert forced.status_code == 303 and forced.headers["Location"] == "/exams"
    assert exam_of(api, exam["id"]) == {"status_code": 404}
    empty = api.create_exam()
    assert post(office, f"/exams/{empty['id']}/delete", f"/exams/{empty['id']}", confirm="y").status_code == 303
    assert exam_of(api, empty["id"]) == {"status_code": 404}


def test_copy_makes_a_new_exam_with_the_same_roster_and_settings(office, api):
    source = api.create_exam(title=unique("Source "), roster=["c1", {"student_id": "c2", "name": "Cy Two"}])
    assert api.patch(f"/api/exams/{source['id']}", json={"settings": {"delay_min": 7}}).status_code == 200
    page = office.get(f"/exams/{source['id']}/copy", headers=HTML).get_data(as_text=True)
    assert f'value="{source["title"]} (copy)"' in page
    answer = post(office, f"/exams/{source['id']}/copy", title="Resit", starts_at="2032-05-01T09:00",
                  ends_at="2032-05-01T10:00")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and re.search(r'id="accepted">2<', text)
    copy_id = int(re.search(r'id="open-live" href="/exams/(\d+)"', text).group(1))
    copy = api.get(f"/api/exams/{copy_id}", "teacher").json()
    assert copy["title"] == "Resit" and datetime.fromisoformat(copy["starts_at"]) == at("2032-05-01T09:00")
    assert copy["entry_code"] and copy["entry_code"] != source["entry_code"]
    assert roster_ids(api, copy_id) == {"c1", "c2"}
    names = {r["student_id"]: r["name"] for r in api.get(f"/api/exams/{copy_id}/roster", "teacher").json()["roster"]}
    assert names["c2"] == "Cy Two"
    patched = api.patch(f"/api/exams/{copy_id}", json={"title": "Resit"}).json()
    assert patched["settings"]["delay_min"] == 7

    before = exam_count()
    refused = post(office, f"/exams/{source['id']}/copy", title="Resit", starts_at="2032-05-01T10:00",
                   ends_at="2032-05-01T09:00")
    assert refused.status_code == 400 and 'id="problem"' in refused.get_data(as_text=True)
    assert exam_count() == before


def test_the_token_api_copies_an_exam_too(api):
    source = api.create_exam(title=unique("Api source "), roster=["k1", "k2"])
    times = {"starts_at": "2033-01-01T09:00:00Z", "ends_at": "2033-01-01T10:00:00Z"}
    answer = api.post(f"/api/exams/{source['id']}/copy", "teacher", json=times)
    assert answer.status_code == 201, answer.text
    copy = answer.json()
    assert copy["title"] == source["title"] + " (copy)" and copy["warnings"] == []
    assert roster_ids(api, copy["id"]) == {"k1", "k2"}
    open_exam = api.create_exam(title="x" * 200)  # no roster: neither has its copy
    assert exam_of(api, open_exam["id"])["roster_restricted"] is False
    copied = api.post(f"/api/exams/{open_exam['id']}/copy", "teacher", json={**times, "title": "Open again"}).json()
    assert copied["title"] == "Open again"
    assert api.get(f"/api/exams/{copied['id']}/roster", "teacher").json()["roster"] == []
    assert exam_of(api, copied["id"])["roster_restricted"] is False and exam_of(api, copy["id"])["roster_restricted"]
    long = api.post(f"/api/exams/{open_exam['id']}/copy", "teacher", json=times).json()["title"]
    assert len(long) == 200 and long.endswith(" (copy)")

    before = exam_count()
    backwards = {"starts_at": times["ends_at"], "ends_at": times["starts_at"]}
    assert api.post(f"/api/exams/{source['id']}/copy", "teacher", json=backwards).status_code == 400
    assert api.post(f"/api/exams/{source['id']}/copy", "teacher", json={"title": "no times"}).status_code == 400
    assert api.post(f"/api/exams/{source['id']}/copy", None, json=times).status_code == 401
    assert api.post("/api/exams/999999/copy", "teacher", json=times).status_code == 404
    assert exam_count() == before


# --- the roster ---------------------------------------------------------------------------------


def test_a_pasted_roster_is_reported_row_by_row(office, api):
    a, b = unique("r"), unique("r")
    exam = api.create_exam(title=unique("Roster "), roster=[b])
    other = api.create_exam(title=unique("Same time "), roster=[a])  # overlaps: a warning for a
    answer = post(office, f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster",
                  text=f"{a} Ann Lee\n{a} Ann again\n{b} Bo Chen\n王五\n")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    rows = report_rows(page)
    assert rows[:3] == [(1, "added", a), (2, "refused", a), (3, "already", b)]
    assert rows[3][:2] == (4, "added") and rows[3][2].startswith("gen-")  # the generated id of 王五
    assert "appears twice" in page and "王五" in page
    assert re.search(rf"<li>{a}: {re.escape(other['title'])}", page)  # the overlap
    assert {a, b} <= roster_ids(api, exam["id"])
    registry = {s["student_id"]: s["name"] for s in api.get("/api/admin/students", "teacher").json()["students"]}
    assert registry[a] == "Ann Lee"


def test_csv_and_xlsx_rosters_are_uploaded(office, api):
    exam = api.create_exam(title=unique("Files "), roster=[])
    assert 'id="open-exam"' not in office.get(f"/exams/{exam['id']}/roster", headers=HTML).get_data(as_text=True)
    ids = [unique("f") for _ in range(4)]
    csv = f"Student ID,Name\n{ids[0]},Ann\n{ids[1]},Bo\n,nobody\n".encode()
    answer = post(office, f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster",
                  files={"file": (io.BytesIO(csv), "hall.csv", "text/csv")})
    assert answer.status_code == 200
    assert report_rows(answer.get_data(as_text=True)) == [(2, "added", ids[0]), (3, "added", ids[1]), (4, "refused", "")]
    book = xlsx([["学号", "姓名"], [ids[2], "张三"], [ids[3], "李四"], [ids[0], "Ann"]])
    answer = post(office, f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster",
                  files={"file": (io.BytesIO(book), "hall.xlsx", "application/octet-stream")})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "张三" in page
    assert report_rows(page) == [(2, "added", ids[2]), (3, "added", ids[3]), (4, "already", ids[0])]
    assert roster_ids(api, exam["id"]) == set(ids)


def test_bad_roster_files_change_nothing(office, api, suite_settings):
    exam = api.create_exam(title=unique("Bad files "), roster=["keep"])
    path = f"/exams/{exam['id']}/roster"
    for name, data, kind in (("broken.xlsx", b"PK\x03\x04 not really a workbook", "application/octet-stream"),
                             ("hall.pdf", b"%PDF-1.4", "application/pdf")):
        answer = post(office, path, path, files={"file": (io.BytesIO(data), name, kind)})
        assert answer.status_code in (400, 415) and 'id="problem"' in answer.get_data(as_text=True), name
    only_refused = post(office, path, path, text="s9 " + "N" * 300)
    assert only_refused.status_code == 400 and report_rows(only_refused.get_data(as_text=True)) == [(1, "refused", "s9")]
    nothing = post(office, path, path, text="  ")
    assert nothing.status_code == 400 and "Paste students or choose a file" in nothing.get_data(as_text=True)
    huge = b"s1 A\n" * (suite_settings.max_import_bytes // 5 + 1)
    too_large = post(office, path, path, files={"file": (io.BytesIO(huge), "huge.txt", "text/plain")})
    assert too_large.status_code == 413 and "<html" in too_large.get_data(as_text=True)
    assert roster_ids(api, exam["id"]) == {"keep"}


def test_the_roster_page_of_an_open_exam_says_the_roster_keeps_nobody_out(office, api):
    exam = api.create_exam()  # no roster: anyone with the entry code joins
    student = unique("o")
    page = post(office, f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster", text=f"{student} Olga")
    assert page.status_code == 200 and 'id="open-exam"' in page.get_data(as_text=True)
    assert roster_ids(api, exam["id"]) == {student}
    assert api.try_join(exam["id"], unique("walk-in")).status_code == 201  # still open, as through the API


def test_a_student_is_taken_off_the_roster_after_a_confirmation(office, api):
    exam = api.create_exam(roster=["x1", "x2"])
    listed = office.get("/exams", headers=HTML).get_data(as_text=True)  # the exam list leads to the roster
    assert f'href="/exams/{exam["id"]}/roster" class="roster-link">2<' in listed
    page = office.get(f"/exams/{exam['id']}/roster", headers=HTML).get_data(as_text=True)
    link = f"/exams/{exam['id']}/roster/x1/remove"
    assert f'href="{link}"' in page
    confirm = office.get(link, headers=HTML)
    assert confirm.status_code == 200 and 'id="confirm-remove"' in confirm.get_data(as_text=True)
    assert roster_ids(api, exam["id"]) == {"x1", "x2"}  # the confirmation page changes nothing
    answer = post(office, link, link)
    assert answer.status_code == 303 and answer.headers["Location"] == f"/exams/{exam['id']}/roster"
    assert roster_ids(api, exam["id"]) == {"x2"}
    assert office.get(link, headers=HTML).status_code == 404
    assert post(office, link, f"/exams/{exam['id']}/roster").status_code == 404


# --- the registry -------------------------------------------------------------------------------


def test_the_registry_is_searched_by_id_or_name_a_page_at_a_time(office, api):
    prefix = unique("reg").replace("-", "")
    students = [{"student_id": f"{prefix}{i:03}", "name": f"Name{prefix} {i}"} for i in range(130)]
    students.append({"student_id": f"{prefix}pct", "name": "100% Sure"})
    assert api.post("/api/admin/students", "teacher", json={"students": students}).status_code == 200
    page = office.get("/students", query_string={"q": prefix}, headers=HTML).get_data(as_text=True)
    assert "131 students match." in page and "Page 1 of 2." in page
    assert len(re.findall(r'<tr data-student="', page)) == 100 and 'id="next-page"' in page
    second = office.get("/students", query_string={"q": prefix, "page": 2}, headers=HTML).get_data(as_text=True)
    assert len(re.findall(r'<tr data-student="', second)) == 31 and 'id="previous-page"' in second
    by_name = office.get("/students", query_string={"q": f"name{prefix.upper()} 12"}, headers=HTML).get_data(as_text=True)
    assert set(re.findall(r'<tr data-student="([^"]+)"', by_name)) == {f"{prefix}012", f"{prefix}120",
                                                                      f"{prefix}121", f"{prefix}122",
                                                                      f"{prefix}123", f"{prefix}124",
                                                                      f"{prefix}125", f"{prefix}126",
                                                                      f"{prefix}127", f"{prefix}128",
                                                                      f"{prefix}129"}
    wildcard = office.get("/students", query_string={"q": "%"}, headers=HTML).get_data(as_text=True)
    assert re.findall(r'<tr data-student="([^"]+)"', wildcard) == [f"{prefix}pct"]  # "%" is searched as itself
    for odd in ("page=0", "page=abc", "page=99999999999", "page=-1"):
        assert office.get(f"/students?q={prefix}&{odd}", headers=HTML).status_code == 200, odd


def test_a_registry_file_is_imported_with_its_report(office, api):
    ids = [unique("g"), unique("g")]
    book = xlsx([["Name", "Student Number", "Class"], ["Li Lei", ids[0], "3"], ["Han Meimei", ids[1], "3"],
                 ["Nobody", "", "3"]])
    answer = post(office, "/students/import", "/students", files={"file": (io.BytesIO(book), "class.xlsx", "")})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert report_rows(page) == [(2, "accepted", ids[0]), (3, "accepted", ids[1]), (4, "refused", "")]
    assert "New in the registry: 2; renamed: 0." in page
    registry = {s["student_id"]: s["name"] for s in api.get("/api/admin/students", "teacher").json()["students"]}
    assert registry[ids[0]] == "Li Lei" and registry[ids[1]] == "Han Meimei"
    bad = post(office, "/students/import", "/students", files={"file": (io.BytesIO(b"PK\x03\x04junk"), "x.xlsx", "")})
    assert bad.status_code == 400 and 'id="problem"' in bad.get_data(as_text=True)


# --- who may -------------------------------------------------------------------------------------


def changes_of(exam_id: int) -> dict:
    """Every change of this module, with fields that would make it happen."""
    return {
        f"/exams/{exam_id}/edit": {"title": "taken over", "starts_at": "2031-01-01T09:00", "ends_at": "2031-01-01T10:00"},
        f"/exams/{exam_id}/extend": {"minutes": "30"},
        f"/exams/{exam_id}/end": {"confirm": "y"},
        f"/exams/{exam_id}/delete": {"confirm": "y", "with_files": "y"},
        f"/exams/{exam_id}/copy": {"title": "mine", "starts_at": "2031-01-01T09:00", "ends_at": "2031-01-01T10:00"},
        f"/exams/{exam_id}/roster": {"text": "w9 Mallory"},
        f"/exams/{exam_id}/roster/w1/remove": {},
        "/students/import": {"text": "w9 Mallory"},
    }


def state_of(api, exam_id: int) -> tuple:
    registry = {s["student_id"] for s in api.get("/api/admin/students", "teacher").json()["students"]}
    return exam_of(api, exam_id), roster_ids(api, exam_id), exam_count(), "w9" in registry


def test_invigilators_signed_out_browsers_and_forged_posts_change_nothing(app, office, api):
    exam = api.create_exam(roster=["w1", "w2"])
    assert set_invigilator_password(office, exam["id"]).status_code == 303
    before = state_of(api, exam["id"])
    watching = invigilator_of(app, exam["id"])
    page = f"/exams/{exam['id']}"  # a valid CSRF token of the invigilator's session
    for path, fields in changes_of(exam["id"]).items():
        refused = watching.post(path, data={**fields, "csrf_token": token_of(watching, page)}, headers=HTML)
        assert refused.status_code == 403, path
        signed_out = app.test_client().post(path, data=fields, headers=HTML)
        assert signed_out.status_code in (302, 400), path  # no session, so no CSRF token either
        forged = office.post(path, data=fields, headers=HTML)
        assert forged.status_code == 400 and "did not come from this site" in forged.get_data(as_text=True), path
    for path in (f"/exams/{exam['id']}/edit", f"/exams/{exam['id']}/copy", f"/exams/{exam['id']}/roster",
                 f"/exams/{exam['id']}/roster/w1/remove", "/students"):
        assert watching.get(path, headers=HTML).status_code == 403, path
        assert app.test_client().get(path, headers=HTML).headers["Location"].startswith("/sign-in"), path
        assert app.test_client().get(path, headers=JSON).status_code == 401, path
    text = watching.get(page, headers=HTML).get_data(as_text=True)
    assert 'id="exam-changes"' not in text and "/roster" not in text and "/extend" not in text
    assert state_of(api, exam["id"]) == before


def test_the_pages_are_in_chinese(office, api):
    chinese = {**HTML, "Accept-Language": "zh-CN"}
    # Ids of this test only: the pages show other exams' titles where students overlap.
    student, pasted = unique("s"), unique("s")
    exam = api.create_exam(title="期末考试", roster=[student])
    api.create_exam(title="补考", roster=[student, pasted])  # overlaps to warn of
    allowed = {"UTC", "Etc", "CSV", "Excel", "xlsx"} | words(exam["entry_code"])  # names of formats stay
    office.post("/language", data={"locale": "zh", "next": "/exams", "csrf_token": token_of(office, "/exams")},
                headers=HTML)
    try:
        # The exam's page, with its controls, is test_console_i18n's.
        for path in (f"/exams/{exam['id']}/edit", f"/exams/{exam['id']}/copy",
                     f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster/{student}/remove", "/students?q=zzz"):
            page = office.get(path, headers=chinese).get_data(as_text=True)
            assert visible_words(page) - allowed - _usernames(page) == set(), path
        report = post(office, f"/exams/{exam['id']}/roster", f"/exams/{exam['id']}/roster",
                      text=f"{pasted} 二\n{pasted} 二\n王{unique('')}\n")
        page = report.get_data(as_text=True)
        assert report.status_code == 200 and 'id="import-warnings"' in page and 'data-outcome="refused"' in page
        assert visible_words(page) - allowed - _usernames(page) - words("gen") == set()
    finally:
        office.post("/language", data={"locale": "en", "next": "/exams", "csrf_token": token_of(office, "/exams")},
                    headers=HTML)


def _usernames(page: str) -> set[str]:
    who = re.search(r'id="who"[^>]*>([^<]+)<', page)
    return words(who.group(1)) if who else set()
