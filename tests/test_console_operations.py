"""The console's operations page (workers and queues, Flower, the seat settings, reports and
archives) and its staff accounts, in this process: who may use them, CSRF, bad input refused
without a change, and an account made here signing in."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers import ADMIN_TOKEN, Api, AppTransport, unique
from tests.test_console import HTML, JSON, PASSWORD, invigilator_of, new_account, post_form, set_invigilator_password, sign_in


@pytest.fixture(scope="module")
def office(app):
    """One administrator and one teacher, signed in once for the module (the suite's sign-ins from
    127.0.0.1 stay inside the per-address budget)."""
    admin, teacher = app.test_client(), app.test_client()
    assert sign_in(admin, new_account("admin")).status_code == 302
    assert sign_in(teacher, new_account("teacher")).status_code == 302
    return {"admin": admin, "teacher": teacher}


def stored_seat_settings() -> dict:
    from proctor import seat_settings

    return seat_settings.seat_configuration()


def account_id(username: str) -> int:
    from sqlalchemy import select

    from proctor.db import engine
    from proctor.schema import staff

    with engine().connect() as conn:
        return conn.execute(select(staff.c.id).where(staff.c.username == username)).scalar()


# --- who may do what ----------------------------------------------------------------------------


def test_signed_out_the_operations_and_account_pages_lead_to_sign_in(client):
    for path in ("/operations", "/accounts", "/account", "/exams/1/report.csv"):
        page = client.get(path, headers=HTML)
        assert page.status_code == 302 and page.headers["Location"].startswith("/sign-in"), path
        assert client.get(path, headers=JSON).status_code == 401, path


def test_an_invigilator_is_refused_every_operations_and_account_page(app, office):
    exam = Api(AppTransport(app), ADMIN_TOKEN).create_exam(title=unique("Watched "), roster=["s1"])
    assert set_invigilator_password(office["teacher"], exam["id"]).status_code == 303
    watching = invigilator_of(app, exam["id"])
    for path in ("/operations", "/accounts", "/account", f"/exams/{exam['id']}/report.csv"):
        assert watching.get(path, headers=HTML).status_code == 403, path
    before = stored_seat_settings()
    answer = post_form(watching, "/operations/seat-settings", f"/exams/{exam['id']}", config="{}")
    assert answer.status_code == 403 and stored_seat_settings() == before


def test_a_teacher_may_not_manage_accounts(office):
    teacher = office["teacher"]
    assert teacher.get("/accounts", headers=HTML).status_code == 403
    assert 'id="nav-accounts"' not in teacher.get("/exams", headers=HTML).get_data(as_text=True)
    name = unique("made-by-teacher")
    answer = post_form(teacher, "/accounts", "/exams", username=name, role="admin", password=PASSWORD)
    assert answer.status_code == 403 and account_id(name) is None
    victim = new_account()
    assert post_form(teacher, f"/accounts/{account_id(victim)}/remove", "/exams").status_code == 403
    assert post_form(teacher, f"/accounts/{account_id(victim)}/password", "/exams",
                     **{f"a{account_id(victim)}-password": "taken over by a teacher"}).status_code == 403
    assert account_id(victim) is not None and sign_in(office["admin"].application.test_client(), victim).status_code == 302


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(office):
    admin = office["admin"]
    before = stored_seat_settings()
    answer = admin.post("/operations/seat-settings", data={"config": '{"default_url": "https://forged.example"}'},
                        headers=HTML)
    assert answer.status_code == 400 and stored_seat_settings() == before
    name = unique("forged")
    assert admin.post("/accounts", data={"username": name, "role": "admin", "password": PASSWORD},
                      headers=HTML).status_code == 400
    assert account_id(name) is None
    victim = new_account()
    assert admin.post(f"/accounts/{account_id(victim)}/remove", headers=HTML).status_code == 400
    assert account_id(victim) is not None


# --- the operations page ------------------------------------------------------------------------


def test_the_operations_page_shows_queues_workers_flower_and_each_exams_report(app, office):
    exam = Api(AppTransport(app), ADMIN_TOKEN).create_exam(title=unique("Reported "), roster=["s1"])
    page = office["teacher"].get("/operations", headers=HTML)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-queue="video_merge"' in text and ('id="worker-list"' in text or 'id="no-workers"' in text)
    assert 'id="flower-unset"' in text and "PROCTOR_FLOWER_URL" in text  # not configured in the suite
    assert f'href="/exams/{exam["id"]}/report.csv"' in text


def test_the_flower_link_is_the_configured_address(app_with, office):
    app = app_with(flower_url="https://ops.example/flower/")
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    text = client.get("/operations", headers=HTML).get_data(as_text=True)
    assert 'id="flower-link"' in text and 'href="https://ops.example/flower/"' in text


def test_the_report_downloads_as_the_api_serves_it_its_cells_inert(app, office):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("=HYPERLINK(\"x\") "), roster=[{"student_id": "s1", "name": "=1+1"}])
    answer = office["teacher"].get(f"/exams/{exam['id']}/report.csv", headers=HTML)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == f'attachment; filename="exam-{exam["id"]}-report.csv"'
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.get_data(as_text=True) == api.get(f"/api/exams/{exam['id']}/report.csv", "teacher").text
    assert "'=1+1" in answer.get_data(as_text=True) and "\n=1+1" not in answer.get_data(as_text=True)
    assert office["teacher"].get("/exams/999999/report.csv", headers=HTML).status_code == 404


def test_archives_are_listed_with_their_exam(app, office):
    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import archives

    exam = Api(AppTransport(app), ADMIN_TOKEN).create_exam(title=unique("Archived "), roster=["s1"])
    with engine().begin() as conn:
        conn.execute(archives.insert().values(exam_id=exam["id"], directory=f"/backup/exam-{exam['id']}", files=3,
                                              bytes=3 * 1048576, created_at=utcnow()))
    text = office["teacher"].get("/operations", headers=HTML).get_data(as_text=True)
    row = re.search(rf'<tr data-exam="{exam["id"]}">(.*?)</tr>', text, re.S).group(1)
    assert f"/backup/exam-{exam['id']}" in row and "3 files, 3.1 MB" in row


def test_seat_settings_are_saved_and_served_to_the_seats(app, office, seat_config):
    teacher = office["teacher"]
    shown = json.loads(re.search(r'<textarea[^>]*id="config"[^>]*>\s*(.*?)</textarea>',
                                 teacher.get("/operations", headers=HTML).get_data(as_text=True), re.S)
                       .group(1).replace("&#34;", '"').replace("&quot;", '"'))
    assert shown == stored_seat_settings()
    new = {**shown, "default_url": "https://exam.example/start", "a_key_of_our_own": {"kept": True}}
    answer = post_form(teacher, "/operations/seat-settings", "/operations", config=json.dumps(new))
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/operations?saved=1#seat-settings")
    served = Api(AppTransport(app)).get("/api/config").json()["config"]
    assert served["default_url"] == "https://exam.example/start" and served["a_key_of_our_own"] == {"kept": True}


@pytest.mark.parametrize("config, shown", [
    ("{not json", "not a JSON file"),
    ("[1, 2]", "one JSON object"),
    ('{"screen_recording": {"recording": {"fps": 0}}}', "fps"),
    ('{"mysql": {"host": "db"}}', "never served to seats"),
    ('{"proxy": {"password": "hunter2"}}', "never served to seats"),
    ('{"allowed_url_patterns": ["("]}', "not a regular expression"),
])
def test_bad_seat_settings_are_refused_with_a_reason_and_change_nothing(office, seat_config, config, shown):
    before = stored_seat_settings()
    answer = post_form(office["teacher"], "/operations/seat-settings", "/operations", config=config)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="seat-settings-problem"' in text and shown in text
    assert stored_seat_settings() == before


def test_seat_settings_larger_than_the_api_takes_are_refused(office, seat_config):
    from proctor.seat_settings import MAX_BYTES

    before = stored_seat_settings()
    huge = json.dumps({"allowed_urls": ["https://x.example/" + "a" * 1000] * (MAX_BYTES // 1000)})
    answer = post_form(office["teacher"], "/operations/seat-settings", "/operations", config=huge)
    assert answer.status_code == 400 and stored_seat_settings() == before


# --- staff accounts -----------------------------------------------------------------------------


def test_an_administrator_creates_an_account_that_then_signs_in(app, office):
    admin, name = office["admin"], unique("new-teacher")
    answer = post_form(admin, "/accounts", "/accounts", username=name.upper(), role="teacher", password=PASSWORD)
    assert answer.status_code == 303
    listing = admin.get(answer.headers["Location"], headers=HTML).get_data(as_text=True)
    assert f'data-account="{name}"' in listing and 'id="created"' in listing
    fresh = app.test_client()
    assert sign_in(fresh, name).status_code == 302
    assert fresh.get("/exams", headers=HTML).status_code == 200
    assert fresh.get("/accounts", headers=HTML).status_code == 403  # a teacher, as made


def test_refused_new_accounts_create_nothing(office):
    admin, taken = office["admin"], new_account()
    for fields in ({"username": unique("short"), "password": "too short"},
                   {"username": "no spaces allowed", "password": PASSWORD},
                   {"username": unique("role"), "password": PASSWORD, "role": "root"},
                   {"username": taken.upper(), "password": PASSWORD}):
        before = len(admin.get("/accounts", headers=HTML).get_data(as_text=True).split("data-account=")) - 1
        answer = post_form(admin, "/accounts", "/accounts", **{"role": "teacher", **fields})
        assert answer.status_code in {400, 409}, fields
        after = len(answer.get_data(as_text=True).split("data-account=")) - 1
        assert after == before, fields


def test_a_new_password_set_by_an_administrator_signs_the_account_out(app, office):
    name = new_account()
    theirs = app.test_client()
    assert sign_in(theirs, name).status_code == 302
    staff_id = account_id(name)
    short = post_form(office["admin"], f"/accounts/{staff_id}/password", "/accounts", **{f"a{staff_id}-password": "short"})
    assert short.status_code == 400 and theirs.get("/exams", headers=HTML).status_code == 200
    new_password = "a brand new password"
    answer = post_form(office["admin"], f"/accounts/{staff_id}/password", "/accounts",
                       **{f"a{staff_id}-password": new_password})
    assert answer.status_code == 303
    assert theirs.get("/exams", headers=HTML).status_code == 302  # the old session opens nothing
    assert sign_in(app.test_client(), name).status_code == 401
    assert sign_in(app.test_client(), name, new_password).status_code == 302


def test_an_administrator_removes_an_account_but_not_their_own(app, office):
    admin = office["admin"]
    name = new_account()
    theirs = app.test_client()
    assert sign_in(theirs, name).status_code == 302
    assert post_form(admin, f"/accounts/{account_id(name)}/remove", "/accounts").status_code == 303
    assert account_id(name) is None and theirs.get("/exams", headers=HTML).status_code == 302
    own = account_id(re.search(r'id="who"[^>]*>([^<]+)<', admin.get("/exams", headers=HTML).get_data(as_text=True))
                     .group(1))
    answer = post_form(admin, f"/accounts/{own}/remove", "/accounts")
    assert answer.status_code == 409 and account_id_exists(own)
    assert post_form(admin, "/accounts/999999/remove", "/accounts").status_code == 404


def account_id_exists(staff_id: int) -> bool:
    from proctor.web import accounts

    return accounts.staff_row(staff_id) is not None


def test_the_last_administrator_stays(office):
    from proctor.errors import Conflict
    from proctor.web import accounts

    only = accounts.create_staff(unique("lone-admin"), PASSWORD, accounts.ADMIN)
    teacher = accounts.create_staff(unique("not-admin"), PASSWORD, accounts.TEACHER)
    with pytest.raises(Conflict):
        accounts.remove_staff(only["id"], only["id"])
    with pytest.raises(Conflict):  # only an administrator removes
        accounts.remove_staff(only["id"], teacher["id"])
    assert accounts.staff_row(only["id"]) is not None


def test_everyone_changes_their_own_password_and_language(app):
    name, client = new_account(), app.test_client()
    assert sign_in(client, name).status_code == 302
    other = app.test_client()
    assert sign_in(other, name).status_code == 302
    new_password = "my own new password"
    wrong = post_form(client, "/account", "/account", current="not my password", password=new_password,
                      repeat=new_password)
    assert wrong.status_code == 400 and "The current password is not right." in wrong.get_data(as_text=True)
    differ = post_form(client, "/account", "/account", current=PASSWORD, password=new_password, repeat="something else")
    assert differ.status_code == 400
    assert sign_in(app.test_client(), name).status_code == 302  # unchanged so far
    answer = post_form(client, "/account", "/account", current=PASSWORD, password=new_password, repeat=new_password)
    assert answer.status_code == 200 and 'id="password-changed"' in answer.get_data(as_text=True)
    assert client.get("/exams", headers=HTML).status_code == 200  # this browser stays signed in
    assert other.get("/exams", headers=HTML).status_code == 302  # the other one does not
    assert post_form(client, "/language", "/account", locale="zh", next="/account").headers["Location"] == "/account"
    assert '<html lang="zh-Hans">' in client.get("/account", headers=HTML).get_data(as_text=True)
    from proctor.web import accounts

    assert accounts.staff_row(account_id(name)).locale == "zh"


def test_chinese_operations_and_account_pages_have_no_english_left(app, office):
    from proctor import exams
    from tests.test_console_i18n import visible_words, words

    chinese = {**HTML, "Accept-Language": "zh-CN"}
    admin = office["admin"]
    username = re.search(r'id="who"[^>]*>([^<]+)<', admin.get("/exams", headers=HTML).get_data(as_text=True)).group(1)
    titles = {w for exam in exams.list_exams() for w in words(exam["title"])}  # the suite's exams
    allowed = {"UTC", "Etc", "MB"} | words(username) | titles
    for path in ("/operations", "/accounts", "/account"):
        page = admin.get(path, headers=chinese)
        assert page.status_code == 200, path
        assert visible_words(page.get_data(as_text=True)) - allowed == set(), path


def test_the_accounts_page_names_only_an_account_that_exists_as_created(office):
    page = office["admin"].get("/accounts?created=ceo-approved-this", headers=HTML).get_data(as_text=True)
    assert 'id="created"' not in page


@pytest.mark.parametrize("value", ["javascript:alert(1)", "ops.example/flower", "https://ops.example/a b"])
def test_a_flower_address_that_is_no_web_address_stops_the_process(value):
    from proctor.config import load_settings

    with pytest.raises(SystemExit, match="PROCTOR_FLOWER_URL"):
        load_settings({"PROCTOR_FLOWER_URL": value, "PROCTOR_ADMIN_TOKEN": "t", "PROCTOR_SECRET_KEY": "k"})
