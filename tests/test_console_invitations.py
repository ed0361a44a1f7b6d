"""Students' invitation codes from the console, in this process (Flask's test client): the page
lists who has an invitation and whether it was used (never a code), issuing answers a page of
slips to print (one a student, its code shown there only), and each code joins through the token
API exactly once. Invigilators, signed-out browsers and posts without the CSRF token issue
nothing; the Chinese pages have no English left."""
from __future__ import annotations

import re

import pytest

from tests.helpers import unique
from tests.test_console import HTML, invigilator_of, new_account, set_invigilator_password, sign_in, token_of
from tests.test_console_i18n import visible_words, words

CODE = r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}"
ROSTER = [{"student_id": "s1", "name": "张三"}, {"student_id": "s2", "name": "李四"}, {"student_id": "s10", "name": "王五"}]


@pytest.fixture(scope="module")
def office(app):
    """One teacher signed in for the module (sign-ins count against 127.0.0.1's budget)."""
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    return client


def issue(client, exam_id: int, headers=HTML, **fields):
    """The invitations form posted as its page would post it (``missing=y``, or ``ticked=y`` with
    ``students=[...]``)."""
    token = token_of(client, f"/exams/{exam_id}/invitations")
    return client.post(f"/exams/{exam_id}/invitations", data={**fields, "csrf_token": token}, headers=headers)


def slips(page: str) -> dict[str, str]:
    """Student id → invitation code of each slip on the page."""
    found = re.findall(r'<article class="slip" data-student="([^"]+)">.*?class="code invitation-code"[^>]*>([^<]+)<',
                       page, re.S)
    return dict(found)


def listed(client, exam_id: int) -> dict[str, str]:
    """Student id → invitation state (none, unused, used) as the invitations page lists them."""
    page = client.get(f"/exams/{exam_id}/invitations", headers=HTML)
    assert page.status_code == 200
    return dict(re.findall(r'<tr data-student="([^"]+)" data-invitation="(\w+)">', page.get_data(as_text=True)))


def issued(api, exam_id: int) -> list[dict]:
    answer = api.get(f"/api/exams/{exam_id}/invitations", "teacher")
    assert answer.status_code == 200
    return answer.json()["invitations"]


def join_with(api, exam_id: int, code: str):
    return api.post(f"/api/exams/{exam_id}/join", json={"invitation_code": code})


def test_issuing_prints_a_slip_per_student_whose_code_joins_once(office, api):
    title = unique("Invited ")
    exam = api.create_exam(title=title, roster=ROSTER)
    assert listed(office, exam["id"]) == {"s1": "none", "s2": "none", "s10": "none"}
    page_of_exam = office.get(f"/exams/{exam['id']}", headers=HTML).get_data(as_text=True)
    assert f'href="/exams/{exam["id"]}/invitations" id="open-invitations"' in page_of_exam

    answer = issue(office, exam["id"], missing="y")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    codes = slips(page)
    assert list(codes) == ["s1", "s2", "s10"] and all(re.fullmatch(CODE, c) for c in codes.values())
    assert len(set(codes.values())) == 3
    slip = re.search(r'<article class="slip" data-student="s2">(.*?)</article>', page, re.S).group(1)
    for fact in (title, "李四", ">s2<", f"http://localhost/exam/{exam['id']}<", codes["s2"]):
        assert fact in slip, fact
    from proctor.web.console import office_time

    assert office_time(exam["starts_at"]) in slip and office_time(exam["ends_at"]) in slip
    assert 'href="/assets/invitations.css"' in page and "@media print" in office.get(
        "/assets/invitations.css").get_data(as_text=True)

    # The codes are on that answer only: not on the list, not in the API's list, not in any address.
    again = office.get(f"/exams/{exam['id']}/invitations", headers=HTML).get_data(as_text=True)
    assert not any(code in again for code in codes.values())
    assert not any(code in str(issued(api, exam["id"])) for code in codes.values())
    assert not re.search(CODE, " ".join(re.findall(r'(?:href|action|src)="([^"]*)"', page)))

    joined = join_with(api, exam["id"], codes["s2"].lower().replace("-", " "))  # as a student might type it
    assert joined.status_code == 201 and api.session(joined.json())["student_id"] == "s2"
    twice = join_with(api, exam["id"], codes["s2"])
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "invitation_used"
    assert listed(office, exam["id"]) == {"s1": "unused", "s2": "used", "s10": "unused"}
    assert {i["student_id"]: bool(i["used_at"]) for i in issued(api, exam["id"])} == {
        "s1": False, "s2": True, "s10": False}


def test_missing_invites_only_students_without_one_and_ticked_issues_anew(office, api):
    exam = api.create_exam(title=unique("Invited "), roster=ROSTER)
    first = slips(issue(office, exam["id"], ticked="y", students=["s10"]).get_data(as_text=True))
    assert list(first) == ["s10"]
    rest = issue(office, exam["id"], missing="y")
    assert rest.status_code == 201 and set(slips(rest.get_data(as_text=True))) == {"s1", "s2"}
    nobody_left = issue(office, exam["id"], missing="y")
    assert nobody_left.status_code == 409 and 'id="problem"' in nobody_left.get_data(as_text=True)

    # A new code for one student (lost slip): the earlier one stops working, the new one joins.
    anew = slips(issue(office, exam["id"], ticked="y", students=["s10"]).get_data(as_text=True))
    assert list(anew) == ["s10"] and anew["s10"] != first["s10"]
    refused = join_with(api, exam["id"], first["s10"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_code"
    assert join_with(api, exam["id"], anew["s10"]).status_code == 201


def test_refused_issues_change_nothing(office, api):
    exam = api.create_exam(title=unique("Invited "), roster=ROSTER)
    none_ticked = issue(office, exam["id"], ticked="y")
    assert none_ticked.status_code == 400 and "Tick the students to invite." in none_ticked.get_data(as_text=True)
    malformed = issue(office, exam["id"], ticked="y", students=["s1", "a b/c"])
    assert malformed.status_code == 400 and "<code lang=\"en\">students.1" in malformed.get_data(as_text=True)
    outside = issue(office, exam["id"], ticked="y", students=["s1", "stranger"])
    assert outside.status_code == 409 and "not on the roster" in outside.get_data(as_text=True)
    assert issued(api, exam["id"]) == []
    assert issue(office, 999999, missing="y").status_code == 404


def test_invigilators_and_signed_out_browsers_issue_nothing(app, office, api):
    exam = api.create_exam(title=unique("Invited "), roster=ROSTER)
    assert set_invigilator_password(office, exam["id"]).status_code == 303
    watching = invigilator_of(app, exam["id"])
    assert 'id="open-invitations"' not in watching.get(f"/exams/{exam['id']}", headers=HTML).get_data(as_text=True)
    assert watching.get(f"/exams/{exam['id']}/invitations", headers=HTML).status_code == 403
    token = token_of(watching, f"/exams/{exam['id']}")  # a valid token: the refusal is the role's
    refused = watching.post(f"/exams/{exam['id']}/invitations", data={"missing": "y", "csrf_token": token},
                            headers=HTML)
    assert refused.status_code == 403

    signed_out = app.test_client()
    page = signed_out.get(f"/exams/{exam['id']}/invitations", headers=HTML)
    assert page.status_code == 302 and page.headers["Location"].startswith("/sign-in")
    answer = signed_out.post(f"/exams/{exam['id']}/invitations",
                             data={"missing": "y", "csrf_token": token_of(signed_out)}, headers=HTML)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/sign-in")
    assert issued(api, exam["id"]) == []


def test_a_post_without_the_csrf_token_issues_nothing(app, office, api):
    exam = api.create_exam(title=unique("Invited "), roster=ROSTER)
    missing = office.post(f"/exams/{exam['id']}/invitations", data={"missing": "y"}, headers=HTML)
    forged = office.post(f"/exams/{exam['id']}/invitations",
                         data={"missing": "y", "csrf_token": token_of(app.test_client())}, headers=HTML)
    for answer in (missing, forged):
        assert answer.status_code == 400 and "did not come from this site" in answer.get_data(as_text=True)
    assert issued(api, exam["id"]) == []


def test_the_chinese_pages_have_no_english_left(app, api):
    client, username = app.test_client(), new_account()
    assert sign_in(client, username).status_code == 302
    exam = api.create_exam(title="期末考试", roster=ROSTER)
    chinese = {**HTML, "Accept-Language": "zh-CN"}
    allowed = {"UTC", "Etc"} | words(username)
    listing = client.get(f"/exams/{exam['id']}/invitations", headers=chinese).get_data(as_text=True)
    assert visible_words(listing) - allowed == set()
    printed = issue(client, exam["id"], headers=chinese, missing="y")
    assert printed.status_code == 201 and len(slips(printed.get_data(as_text=True))) == 3
    assert visible_words(printed.get_data(as_text=True)) - allowed == set()
    assert join_with(api, exam["id"], slips(printed.get_data(as_text=True))["s1"]).status_code == 201
    listing = client.get(f"/exams/{exam['id']}/invitations", headers=chinese).get_data(as_text=True)
    assert 'data-invitation="used"' in listing and visible_words(listing) - allowed == set()
    refused = issue(client, exam["id"], headers=chinese, ticked="y")
    assert refused.status_code == 400 and visible_words(refused.get_data(as_text=True)) - allowed == set()
