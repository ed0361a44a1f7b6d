"""Who may join an exam: entry codes, invitations, the early window, sessions that belong to a
client already (online, or at a desktop seat), and the one admission budget per address and exam."""
from __future__ import annotations

import itertools

import pytest

from tests.helpers import Api, Seat, error_code, silence, unique

_addresses = (f"10.77.{a}.{b}" for a, b in itertools.product(range(1, 250), range(1, 250)))


def from_new_address(api: Api) -> Api:
    """The API as seen from an address no other test uses (rate limits count per address)."""
    return Api(api.transport.at(next(_addresses)))


def join_body(api: Api, exam_id: int, **body):
    return api.post(f"/api/exams/{exam_id}/join", json=body)


def sessions_of(api: Api, exam_id: int) -> int:
    return api.get(f"/api/exams/{exam_id}", "teacher").json()["sessions"]["total"]


def history(api: Api, exam_id: int) -> list[dict]:
    r = api.get(f"/api/exams/{exam_id}/logins", "teacher")
    assert r.status_code == 200, r.text
    return r.json()["logins"]


# --- proving who joins ---------------------------------------------------------------------------


def test_a_student_id_alone_or_a_wrong_code_is_refused_and_creates_nothing(api):
    exam = api.create_exam()
    r = join_body(api, exam["id"], student_id="victim")
    assert r.status_code == 403 and error_code(r) == "code_required", r.text
    r = join_body(api, exam["id"], student_id="victim", entry_code="AAAA-AAAA")
    assert r.status_code == 403 and error_code(r) == "invalid_code", r.text
    assert sessions_of(api, exam["id"]) == 0


def test_the_entry_code_is_typed_loosely_and_the_teacher_rotates_or_turns_it_off(api):
    exam = api.create_exam()
    code = exam["entry_code"]
    assert len(code) == 9 and code[4] == "-"
    typed = code.replace("-", " ").lower()
    assert join_body(api, exam["id"], student_id="s1", entry_code=typed).status_code == 201

    rotated = api.post(f"/api/exams/{exam['id']}/entry-code", "teacher")
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    new_code = rotated.json()["entry_code"]
    assert new_code != code and api.entry_code(exam["id"]) == new_code
    r = join_body(api, exam["id"], student_id="s2", entry_code=code)
    assert r.status_code == 403 and error_code(r) == "invalid_code"
    assert join_body(api, exam["id"], student_id="s2", entry_code=new_code).status_code == 201

    off = api.post(f"/api/exams/{exam['id']}/entry-code", "teacher", json={"enabled": False})
    assert off.status_code == 200 and off.json()["entry_code"] is None
    r = join_body(api, exam["id"], student_id="s3", entry_code=new_code)
    assert r.status_code == 403 and error_code(r) == "invalid_code"
    # Only the teacher sees or changes the code.
    assert api.post(f"/api/exams/{exam['id']}/entry-code").status_code == 401
    student = api.join(api.create_exam()["id"], "curious")
    assert api.post(f"/api/exams/{exam['id']}/entry-code", student["token"]).status_code == 403


def test_an_invitation_names_its_student_and_is_used_once(api):
    exam = api.create_exam(roster=[{"student_id": "inv1", "name": "Ada"}, "inv2"])
    r = api.post(f"/api/exams/{exam['id']}/invitations", "teacher")
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store", r.text
    codes = {i["student_id"]: i for i in r.json()["invitations"]}
    assert set(codes) == {"inv1", "inv2"} and codes["inv1"]["name"] == "Ada"

    joined = join_body(api, exam["id"], invitation_code=codes["inv1"]["code"].lower())
    assert joined.status_code == 201, joined.text
    assert api.session(joined.json())["student_id"] == "inv1"
    r = join_body(api, exam["id"], invitation_code=codes["inv1"]["code"])
    assert r.status_code == 409 and error_code(r) == "invitation_used"
    # Another student's id beside a code is not a way to use it for them.
    r = join_body(api, exam["id"], student_id="inv1", invitation_code=codes["inv2"]["code"])
    assert r.status_code == 403 and error_code(r) == "invalid_code"
    # Nor is a code of this exam valid for another.
    other = api.create_exam(roster=["inv2"])
    r = join_body(api, other["id"], invitation_code=codes["inv2"]["code"])
    assert r.status_code == 403 and error_code(r) == "invalid_code"

    listed = api.get(f"/api/exams/{exam['id']}/invitations", "teacher").json()["invitations"]
    assert {i["student_id"]: bool(i["used_at"]) for i in listed} == {"inv1": True, "inv2": False}
    assert all("code" not in i for i in listed)


def test_a_new_invitation_replaces_the_old_and_roster_exams_invite_only_their_students(api):
    exam = api.create_exam(roster=["re1"])
    first = api.post(f"/api/exams/{exam['id']}/invitations", "teacher", json={"students": ["re1"]}).json()
    second = api.post(f"/api/exams/{exam['id']}/invitations", "teacher", json={"students": ["re1"]}).json()
    old, new = first["invitations"][0]["code"], second["invitations"][0]["code"]
    r = join_body(api, exam["id"], invitation_code=old)
    assert r.status_code == 403 and error_code(r) == "invalid_code"
    assert join_body(api, exam["id"], invitation_code=new).status_code == 201
    r = api.post(f"/api/exams/{exam['id']}/invitations", "teacher", json={"students": ["stranger"]})
    assert r.status_code == 409 and error_code(r) == "not_on_roster"


def test_joins_open_a_configured_time_before_the_start(api):
    later = api.create_exam(start_in_s=7200)
    r = api.try_join(later["id"], "early")
    assert r.status_code == 403 and error_code(r) == "exam_not_open", r.text
    assert "opens for joining at" in r.json()["error"]["message"]
    assert sessions_of(api, later["id"]) == 0
    soon = api.create_exam(start_in_s=300)  # within PROCTOR_JOIN_EARLY_S (15 minutes)
    assert api.try_join(soon["id"], "early").status_code == 201
    # The teacher may let a student in at any time.
    assert error_code(join_body(api, later["id"], student_id="early")) == "code_required"
    assert api.post(f"/api/exams/{later['id']}/join", "teacher", json={"student_id": "early"}).status_code == 201


# --- no one takes over a student -----------------------------------------------------------------


def test_a_session_in_use_is_not_taken_over_until_its_client_is_silent(api, settings_changed):
    settings_changed(offline_after_s=20)
    exam = api.create_exam()
    student = api.join(exam["id"], "busy")
    assert api.heartbeat(student).status_code == 200

    thief = from_new_address(api)
    r = thief.try_join(exam["id"], "busy")
    assert r.status_code == 409 and error_code(r) == "session_in_use", r.text
    # When the client counts as gone, not when some rate-limit window ends.
    assert 1 <= int(r.headers["Retry-After"]) <= 21
    assert api.heartbeat(student).status_code == 200  # the student's token still works
    refused = [e for e in history(api, exam["id"]) if e["kind"] == "refused"]
    assert len(refused) == 1 and refused[0]["flagged"] and refused[0]["via"] == "token"

    silence(student["session_id"])  # the student's client crashed: they come back
    back = api.join(exam["id"], "busy")
    assert back["session_id"] == student["session_id"]
    assert api.heartbeat(student).status_code == 401


def test_an_invitation_refused_by_a_session_in_use_stays_unused(api):
    exam = api.create_exam(roster=["twice"])
    code = api.post(f"/api/exams/{exam['id']}/invitations", "teacher").json()["invitations"][0]["code"]
    api.join(exam["id"], "twice")
    r = join_body(api, exam["id"], invitation_code=code)
    assert r.status_code == 409 and error_code(r) == "session_in_use"
    listed = api.get(f"/api/exams/{exam['id']}/invitations", "teacher").json()["invitations"]
    assert listed[0]["used_at"] is None


def test_a_token_join_never_takes_a_seat_and_a_seat_never_takes_a_browser_session(api):
    exam = api.create_exam(roster=[{"student_id": "seat1", "name": "Seat One"}, {"student_id": "web1", "name": "Web One"}])
    seat = Seat(api, next(_addresses), "seat1", "Seat One")
    assert seat.login()["status"] == "success"
    silence(api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"][0]["id"])

    r = api.try_join(exam["id"], "seat1")
    assert r.status_code == 409 and error_code(r) == "session_on_seat", r.text
    assert seat.heartbeat().status_code == 200

    browser = api.join(exam["id"], "web1")
    seat_of_web = Seat(api, next(_addresses), "web1", "Web One")
    r = seat_of_web.post_json("/api/login", {"student_id": "web1", "student_name": "Web One"})
    assert r.status_code == 409 and r.json()["status"] == "error" and "in a browser" in r.json()["message"]
    assert api.heartbeat(browser).status_code == 200

    refusals = {(e["student_id"], e["via"]) for e in history(api, exam["id"]) if e["kind"] == "refused"}
    assert refusals == {("seat1", "token"), ("web1", "legacy")}


def test_the_teacher_releases_a_seat_session_to_a_browser(api):
    exam = api.create_exam(roster=[{"student_id": "moving", "name": "Mo Ving"}])
    seat = Seat(api, next(_addresses), "moving", "Mo Ving")
    seat.login()
    sid = api.get(f"/api/exams/{exam['id']}/sessions", "teacher").json()["sessions"][0]["id"]
    silence(sid)
    assert api.post(f"/api/sessions/{sid}/release").status_code == 401
    assert api.post(f"/api/sessions/{sid}/release", "teacher").status_code == 200
    joined = api.join(exam["id"], "moving")
    assert joined["session_id"] == sid
    # The seat it was handed away from is refused from now on.
    assert seat.heartbeat().status_code == 403
    assert api.heartbeat(joined).status_code == 200


def test_the_teacher_can_take_over_any_session(api):
    exam = api.create_exam()
    student = api.join(exam["id"], "stuck")
    r = api.post(f"/api/exams/{exam['id']}/join", "teacher", json={"student_id": "stuck"})
    assert r.status_code == 201 and r.json()["session_id"] == student["session_id"]
    assert api.heartbeat(student).status_code == 401
    r = api.post(f"/api/exams/{exam['id']}/join", "teacher", json={})
    assert r.status_code == 400 and error_code(r) == "invalid_body"


# --- one admission budget ------------------------------------------------------------------------


def test_joins_and_name_lookups_share_one_budget_per_address(api, settings_changed):
    settings_changed(join_address_rate_limit="6 per minute")
    exam = api.create_exam()
    addr = next(_addresses)
    caller = Api(api.transport.at(addr))
    seat = Seat(api, addr, "x", "x")
    code = api.entry_code(exam["id"])
    answers = [join_body(caller, exam["id"], student_id=unique("b"), entry_code=code).status_code for _ in range(3)]
    answers += [seat.get(f"/api/students/{unique('n')}").status_code for _ in range(3)]
    assert answers == [201, 201, 201, 404, 404, 404]
    for r in (join_body(caller, exam["id"], student_id="late", entry_code=code), seat.get("/api/students/late")):
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
    # Another address has its own budget.
    assert from_new_address(api).try_join(exam["id"], unique("c")).status_code == 201


def test_joins_of_one_exam_share_a_budget_whatever_the_address(api, settings_changed):
    settings_changed(join_exam_rate_limit="4 per minute")
    exam, other = api.create_exam(), api.create_exam()
    code = api.entry_code(exam["id"])
    answers = [join_body(from_new_address(api), exam["id"], student_id=unique("d"), entry_code=code).status_code
               for _ in range(5)]
    assert answers == [201, 201, 201, 201, 429]
    assert from_new_address(api).try_join(other["id"], unique("e")).status_code == 201


@pytest.mark.parametrize("body", [{"entry_code": ""}, {"invitation_code": "x" * 33}, {"entry_code": ["A"]}])
def test_malformed_codes_are_400(api, body):
    exam = api.create_exam()
    r = join_body(api, exam["id"], student_id="m", **body)
    assert r.status_code == 400 and error_code(r) == "invalid_body", r.text


# --- the seats' name look-up and names ------------------------------------------------------------


def test_the_seats_name_lookup_knows_only_students_of_an_exam_open_now(api):
    now_id, later_id = unique("now"), unique("later")
    api.create_exam(roster=[{"student_id": now_id, "name": "Now Here"}])
    api.create_exam(start_in_s=7200, roster=[{"student_id": later_id, "name": "Not Yet"}])
    seat = Seat(api, next(_addresses), now_id, "Now Here")
    assert seat.get(f"/api/students/{now_id}").json()["student_name"] == "Now Here"
    r = seat.get(f"/api/students/{later_id}")
    assert r.status_code == 404 and "Not Yet" not in r.text


def test_a_student_without_a_name_on_file_keeps_the_name_of_their_first_login(api):
    student = unique("nameless")
    api.create_exam(roster=[student])
    first = Seat(api, next(_addresses), student, "Real  Name")
    assert first.login()["status"] == "success"
    r = Seat(api, next(_addresses), student, "Someone Else").post_json(
        "/api/login", {"student_id": student, "student_name": "Someone Else"})
    assert r.status_code == 403 and r.json()["status"] == "error", r.text
    again = Seat(api, next(_addresses), student, "real name")
    assert again.login()["status"] == "success"


def test_a_seats_logins_and_lookups_share_its_budget(api, settings_changed):
    settings_changed(legacy_login_rate_limit="4 per minute")
    student = unique("budget")
    api.create_exam(roster=[{"student_id": student, "name": "Bud Get"}])
    seat = Seat(api, next(_addresses), student, "Bud Get")
    assert [seat.get(f"/api/students/{student}").status_code for _ in range(2)] == [200, 200]
    assert seat.login()["status"] == "success" and seat.login()["status"] == "success"
    r = seat.post_json("/api/login", {"student_id": student, "student_name": "Bud Get"})
    assert r.status_code == 429 and r.json()["status"] == "error" and int(r.headers["Retry-After"]) >= 1
    assert seat.get(f"/api/students/{student}").status_code == 429
