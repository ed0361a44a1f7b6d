"""The console in this process (Flask's test client): who may see what, CSRF, the browser
session's cookie and its life in Redis, creating an exam from a pasted roster, the live view's
JSON and its cost, and ``create-admin``. What needs a real browser is in test_console_browser.py."""
from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import event, func, select

from tests.helpers import ADMIN_TOKEN, Api, AppTransport, unique, wait_until

PASSWORD = "a long enough password"
HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"',
                     page).group(1) or ""


def token_of(client, path: str = "/sign-in") -> str:
    page = client.get(path, headers=HTML).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def new_account(role: str = "teacher") -> str:
    from proctor.web import accounts

    name = unique("staff")
    accounts.create_staff(name, PASSWORD, role)
    return name


def sign_in(client, username: str, password: str = PASSWORD, **kw):
    return client.post("/sign-in", data={"username": username, "password": password,
                                         "csrf_token": token_of(client)}, headers=HTML, **kw)


@pytest.fixture
def teacher(app):
    """A test client signed in as a new teacher account."""
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    return client


def cookie_header(response) -> str:
    return next(v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("proctor_console="))


def redis_key_of(client) -> str:
    import hashlib

    from proctor import redis_client

    sid = client.get_cookie("proctor_console").value
    return redis_client.key("console", "session", hashlib.sha256(sid.encode()).hexdigest())


def exam_count() -> int:
    from proctor.db import engine
    from proctor.schema import exams

    with engine().connect() as conn:
        return conn.execute(select(func.count()).select_from(exams)).scalar_one()


# --- signed out ---------------------------------------------------------------------------------


def console_pages(app) -> list[str]:
    """Every console GET route that needs an account, with an id filled in."""
    return [re.sub(r"<[^>]+>", "1", rule.rule) for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("console.") and "GET" in rule.methods
            and rule.endpoint not in {"console.static", "console.sign_in", "console.index",
                                      "console.invigilator_sign_in"}]


def test_signed_out_every_console_page_redirects_to_sign_in_and_its_json_is_401(app, client):
    pages = console_pages(app)
    assert len(pages) >= 4
    for path in pages:
        page = client.get(path, headers=HTML)
        assert page.status_code == 302 and page.headers["Location"].startswith("/sign-in"), path
        data = client.get(path, headers=JSON)
        assert data.status_code == 401 and data.get_json()["error"]["code"] == "unauthorized", path
    assert client.get("/", headers=HTML).headers["Location"] == "/sign-in"


def test_wrong_password_and_unknown_account_are_refused_alike(app):
    client = app.test_client()
    name = new_account()
    wrong = sign_in(client, name, "not the password at all")
    unknown = sign_in(client, unique("nobody"), PASSWORD)
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "Wrong username or password." in answer.get_data(as_text=True)
    assert client.get("/exams", headers=HTML).status_code == 302


def test_sign_in_sets_an_httponly_samesite_cookie_secure_over_https(app):
    plain = app.test_client()
    cookie = cookie_header(sign_in(plain, new_account()))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Max-Age" not in cookie and "Expires" not in cookie  # gone when the browser closes

    tls = app.test_client()
    https = {"base_url": "https://console.example"}
    page = tls.get("/sign-in", headers=HTML, **https).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    # Over HTTPS the CSRF check also wants the Referer of this site (the pages send it to
    # themselves only: Referrer-Policy same-origin).
    answer = tls.post("/sign-in", data={"username": new_account(), "password": PASSWORD, "csrf_token": token},
                      headers={**HTML, "Referer": "https://console.example/sign-in"}, **https)
    assert answer.status_code == 302
    assert "Secure" in cookie_header(answer)


def test_sign_in_rotates_the_session_and_sign_out_deletes_it(app):
    from proctor import redis_client

    client = app.test_client()
    client.get("/sign-in", headers=HTML)
    before = client.get_cookie("proctor_console").value
    before_key = redis_key_of(client)
    assert sign_in(client, new_account()).status_code == 302
    after = client.get_cookie("proctor_console").value
    assert after != before and not redis_client.client().exists(before_key)
    key = redis_key_of(client)
    assert 0 < redis_client.client().ttl(key) <= 3600  # idle expiry

    out = client.post("/sign-out", data={"csrf_token": token_of(client, "/exams")}, headers=HTML)
    assert out.status_code == 302 and out.headers["Location"] == "/sign-in"
    assert not redis_client.client().exists(key)
    replay = app.test_client()
    replay.set_cookie("proctor_console", after)
    assert replay.get("/exams", headers=HTML).status_code == 302


def test_an_idle_session_expires(teacher):
    from proctor import redis_client

    assert teacher.get("/exams", headers=HTML).status_code == 200
    key = redis_key_of(teacher)
    redis_client.client().pexpire(key, 50)  # as if the idle time had passed
    wait_until(lambda: not redis_client.client().exists(key), timeout=10, what="Redis to expire the session")
    assert teacher.get("/exams", headers=HTML).status_code == 302


def test_a_removed_account_opens_nothing(app, teacher):
    from proctor.db import engine
    from proctor.schema import staff

    with engine().begin() as conn:
        conn.execute(staff.delete().where(staff.c.id == _signed_in_id(teacher)))
    assert teacher.get("/exams", headers=HTML).status_code == 302


def _signed_in_id(client) -> int:
    import json

    from proctor import redis_client

    return json.loads(redis_client.client().get(redis_key_of(client)))["staff_id"]


# --- CSRF ---------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(teacher, app):
    before = exam_count()
    form = {"title": "forged", "starts_at": "2030-01-01T09:00", "ends_at": "2030-01-01T11:00", "roster": "s1 A"}
    missing = teacher.post("/exams/new", data=form, headers=HTML)
    other = app.test_client()  # a token of another browser session
    forged = teacher.post("/exams/new", data={**form, "csrf_token": token_of(other)}, headers=HTML)
    for answer in (missing, forged):
        assert answer.status_code == 400
        assert "did not come from this site" in answer.get_data(as_text=True)
    assert teacher.post("/sign-out", headers=HTML).status_code == 400
    assert teacher.get("/exams", headers=HTML).status_code == 200  # still signed in
    assert exam_count() == before


def test_csrf_refusals_answer_json_to_scripts(teacher):
    answer = teacher.post("/language", data={"locale": "zh"}, headers=JSON)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "csrf_failed"


def test_the_token_api_needs_no_csrf_token_and_gets_no_cookie(app):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    r = api.post("/api/exams", "teacher", json={"title": "api", "starts_at": "2030-01-01T09:00:00Z",
                                                "ends_at": "2030-01-01T10:00:00Z"})
    assert r.status_code == 201 and "Set-Cookie" not in r.headers
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")


# --- pages --------------------------------------------------------------------------------------


def test_pages_allow_only_their_own_scripts_and_styles(teacher):
    answer = teacher.get("/exams", headers=HTML)
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    script = teacher.get("/assets/live.js")
    assert script.status_code == 200 and script.mimetype in {"text/javascript", "application/javascript"}


def test_templates_have_no_inline_script_or_style():
    from pathlib import Path

    import proctor.web

    for template in (Path(proctor.web.__file__).parent / "templates").glob("*.html"):
        text = template.read_text()
        scripts = re.findall(r"<script\b[^>]*>", text)
        assert all("src=" in s or 'type="application/json"' in s for s in scripts), template.name
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", text), template.name


def create_exam_form(client, roster: str, **fields):
    form = {"title": unique("Console exam "), "starts_at": "2026-01-01T08:00", "ends_at": "2099-01-01T08:00",
            "roster": roster, **fields}
    return client.post("/exams/new", data={**form, "csrf_token": token_of(client, "/exams/new")}, headers=HTML)


def test_create_an_exam_from_a_pasted_roster_shows_the_report(teacher):
    answer = create_exam_form(teacher, "学号 姓名\ns100 Ann Lee\ns101\tBob\n张三\n")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert re.search(r'id="accepted">3<', page)
    assert "张三" in page and "gen-" in page  # the generated id of a name alone
    exam_id = int(re.search(r"/exams/(\d+)", page).group(1))
    code = re.search(r'id="entry-code">([^<]+)<', page).group(1)
    api = Api(AppTransport(teacher.application), ADMIN_TOKEN)
    assert api.entry_code(exam_id) == code
    assert {r["student_id"] for r in api.get(f"/api/exams/{exam_id}/roster", "teacher").json()["roster"]} >= {"s100", "s101"}


def test_refused_roster_lines_are_listed_and_create_nothing(teacher):
    before = exam_count()
    answer = create_exam_form(teacher, "s1 Ann\ns2 " + "N" * 300 + "\ns1 Ann again\n")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="rejected"' in page
    assert re.findall(r'<td class="n">(\d+)</td>', page) == ["2", "3"]  # the refused lines, by number
    assert exam_count() == before


def test_refused_times_create_nothing(teacher):
    before = exam_count()
    answer = create_exam_form(teacher, "s1 Ann", starts_at="2030-01-01T10:00", ends_at="2030-01-01T09:00")
    assert answer.status_code == 400 and 'id="problem"' in answer.get_data(as_text=True)
    assert create_exam_form(teacher, "", title="").status_code == 200  # the form again, with its message
    assert exam_count() == before


def test_an_unknown_exam_is_a_404_page(teacher):
    answer = teacher.get("/exams/999999", headers=HTML)
    assert answer.status_code == 404 and "<html" in answer.get_data(as_text=True)


def test_the_live_view_shows_every_student_of_the_roster(teacher, app):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam = api.create_exam(roster=["s1", {"student_id": "s2", "name": "Bo"}, "s3"])
    api.join(exam["id"], "s2")
    data = teacher.get(f"/exams/{exam['id']}/live", headers=JSON).get_json()
    rows = {s["student_id"]: s for s in data["students"]}
    assert rows["s2"]["presence"] == "online" and rows["s2"]["name"] == "Bo"
    assert rows["s1"]["presence"] == "not_logged_in"
    assert data["counts"] == {"online": 1, "offline": 0, "not_logged_in": 2, "finished": 0}
    assert data["exam"]["entry_code"] == exam["entry_code"]


def test_the_live_view_lists_ids_as_a_person_reads_them(teacher, app):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam = api.create_exam(roster=["n10", "n9", "N1", "n100", "n2"])
    data = teacher.get(f"/exams/{exam['id']}/live", headers=JSON).get_json()
    assert [s["student_id"] for s in data["students"]] == ["N1", "n2", "n9", "n10", "n100"]


def test_a_refresh_of_the_live_view_costs_the_same_queries_for_500_students_as_for_5(teacher, app):
    from proctor.db import engine

    api = Api(AppTransport(app), ADMIN_TOKEN)
    small = api.create_exam(roster=[f"q{i}" for i in range(5)])
    large = api.create_exam(roster=[f"q{i}" for i in range(500)])
    for exam in (small, large):
        for student in ("q1", "q2"):
            api.join(exam["id"], student)

    def queries(exam_id: int) -> int:
        seen = []
        listener = lambda *args: seen.append(1)  # noqa: E731
        event.listen(engine(), "before_cursor_execute", listener)
        try:
            answer = teacher.get(f"/exams/{exam_id}/live", headers=JSON)
        finally:
            event.remove(engine(), "before_cursor_execute", listener)
        assert answer.status_code == 200 and len(answer.get_json()["students"]) in (5, 500)
        return len(seen)

    assert queries(large["id"]) == queries(small["id"])


# --- invigilators -------------------------------------------------------------------------------

INVIGILATOR_PASSWORD = "the hall's monitor password"


@pytest.fixture(scope="module")
def office(app):
    """One teacher signed in for the tests below: each sign-in counts against the address's budget
    (auth.SIGN_INS_PER_ADDRESS), which the whole suite shares from 127.0.0.1."""
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    return client


def exam_id_of_new_exam(app, roster=("s1", "s2")) -> int:
    return Api(AppTransport(app), ADMIN_TOKEN).create_exam(roster=list(roster))["id"]


def post_form(client, path: str, page: str, **fields):
    """A form posted as the page at ``page`` would post it (with that page's CSRF token)."""
    return client.post(path, data={**fields, "csrf_token": token_of(client, page)}, headers=HTML)


def set_invigilator_password(office, exam_id: int, password: str = INVIGILATOR_PASSWORD):
    return post_form(office, f"/exams/{exam_id}/invigilator-password", f"/exams/{exam_id}", password=password)


def invigilator_of(app, exam_id: int, password: str = INVIGILATOR_PASSWORD):
    """A test client signed in as an invigilator of the exam."""
    client = app.test_client()
    answer = post_form(client, f"/exams/{exam_id}/invigilate", f"/exams/{exam_id}/invigilate", password=password)
    assert answer.status_code == 302 and answer.headers["Location"] == f"/exams/{exam_id}", answer.status_code
    return client


def stored_invigilator_hash(exam_id: int):
    from proctor.db import engine
    from proctor.schema import exams

    with engine().connect() as conn:
        return conn.execute(select(exams.c.invigilator_password_hash).where(exams.c.id == exam_id)).scalar()


CHANGE_CONTROLS = ('id="controls"', 'id="new-code"', 'id="let-in"', 'id="set-invigilator-password"',
                   "/entry-code", "/let-in", "/invigilator-password")


def test_a_teacher_sets_changes_and_clears_the_invigilator_password(app, office):
    exam_id = exam_id_of_new_exam(app)
    page = office.get(f"/exams/{exam_id}", headers=HTML).get_data(as_text=True)
    assert 'id="invigilator-password-unset"' in page
    answer = set_invigilator_password(office, exam_id)
    assert answer.status_code == 303 and answer.headers["Location"] == f"/exams/{exam_id}#invigilators"
    stored = stored_invigilator_hash(exam_id)
    assert stored.startswith("scrypt:") and INVIGILATOR_PASSWORD not in stored
    page = office.get(f"/exams/{exam_id}", headers=HTML).get_data(as_text=True)
    assert f"/exams/{exam_id}/invigilate" in page and 'id="clear-invigilator-password"' in page

    watching = invigilator_of(app, exam_id)
    assert set_invigilator_password(office, exam_id, "another long password").status_code == 303
    # Changing the password signs out whoever signed in with the old one.
    assert watching.get(f"/exams/{exam_id}", headers=HTML).status_code == 302
    refused = post_form(app.test_client(), f"/exams/{exam_id}/invigilate", "/sign-in", password=INVIGILATOR_PASSWORD)
    assert refused.status_code == 401 and "Wrong password." in refused.get_data(as_text=True)

    watching = invigilator_of(app, exam_id, "another long password")
    cleared = post_form(office, f"/exams/{exam_id}/invigilator-password/clear", f"/exams/{exam_id}")
    assert cleared.status_code == 303 and stored_invigilator_hash(exam_id) is None
    assert watching.get(f"/exams/{exam_id}/live", headers=JSON).status_code == 401
    gone = post_form(app.test_client(), f"/exams/{exam_id}/invigilate", "/sign-in", password="another long password")
    assert gone.status_code == 401


def test_a_short_invigilator_password_is_refused_with_the_form_again(app, office):
    exam_id = exam_id_of_new_exam(app)
    answer = set_invigilator_password(office, exam_id, "short")
    assert answer.status_code == 400 and "A password has 10 to 1024 characters." in answer.get_data(as_text=True)
    assert stored_invigilator_hash(exam_id) is None
    missing = post_form(office, "/exams/999999/invigilator-password", "/exams/new", password=INVIGILATOR_PASSWORD)
    assert missing.status_code == 404


def test_an_invigilator_sees_the_live_view_of_their_exam_only(app, office):
    exam_id, other_id = exam_id_of_new_exam(app), exam_id_of_new_exam(app)
    for exam in (exam_id, other_id):  # the same password on both: it still opens only one
        assert set_invigilator_password(office, exam).status_code == 303
    Api(AppTransport(app), ADMIN_TOKEN).join(exam_id, "s2")
    watching = invigilator_of(app, exam_id)

    page = watching.get(f"/exams/{exam_id}", headers=HTML)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="students-table"' in text and "Invigilator (read only)" in text
    assert [c for c in CHANGE_CONTROLS if c in text] == []
    data = watching.get(f"/exams/{exam_id}/live", headers=JSON).get_json()
    assert {s["student_id"]: s["presence"] for s in data["students"]} == {"s1": "not_logged_in", "s2": "online"}
    assert watching.get("/", headers=HTML).headers["Location"] == f"/exams/{exam_id}"

    for path in (f"/exams/{other_id}", "/exams", "/exams/new"):
        refused = watching.get(path, headers=HTML)
        assert refused.status_code == 403 and "change nothing" in refused.get_data(as_text=True), path
    refused = watching.get(f"/exams/{other_id}/live", headers=JSON)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"


def test_every_change_is_refused_to_an_invigilator(app, office):
    exam_id = exam_id_of_new_exam(app)
    assert set_invigilator_password(office, exam_id).status_code == 303
    code, stored, count = Api(AppTransport(app), ADMIN_TOKEN).entry_code(exam_id), stored_invigilator_hash(exam_id), exam_count()
    watching = invigilator_of(app, exam_id)
    page = f"/exams/{exam_id}"  # its CSRF token is valid: the refusal is the role's, not CSRF's
    changes = {
        f"/exams/{exam_id}/entry-code": {"enabled": "1"},
        f"/exams/{exam_id}/let-in": {"student_id": "s1"},
        f"/exams/{exam_id}/invitations": {"missing": "y"},
        f"/exams/{exam_id}/invigilator-password": {"password": "a password of my own"},
        f"/exams/{exam_id}/invigilator-password/clear": {},
        f"/exams/{exam_id}/edit": {"title": "mine", "starts_at": "2030-01-01T09:00", "ends_at": "2030-01-01T10:00"},
        f"/exams/{exam_id}/extend": {"minutes": "30"},
        f"/exams/{exam_id}/end": {"confirm": "y"},
        f"/exams/{exam_id}/delete": {"confirm": "y"},
        f"/exams/{exam_id}/copy": {"title": "mine", "starts_at": "2030-01-01T09:00", "ends_at": "2030-01-01T10:00"},
        f"/exams/{exam_id}/roster": {"text": "s9 Mallory"},
        f"/exams/{exam_id}/roster/{exam_id}/remove": {},
        "/students/import": {"text": "s9 Mallory"},
        f"/exams/{exam_id}/students/{exam_id}/merge": {},
        "/exams/new": {"title": "mine", "starts_at": "2030-01-01T09:00", "ends_at": "2030-01-01T10:00"},
        "/operations/seat-settings": {"config": "{}"},
        "/accounts": {"username": "mallory", "role": "admin", "password": "a password of my own"},
        f"/accounts/{exam_id}/password": {"password": "a password of my own"},
        f"/accounts/{exam_id}/remove": {},
        "/account": {"current": "x", "password": "a password of my own", "repeat": "a password of my own"},
    }
    for path, fields in changes.items():
        answer = post_form(watching, path, page, **fields)
        assert answer.status_code == 403, path
    assert (Api(AppTransport(app), ADMIN_TOKEN).entry_code(exam_id), stored_invigilator_hash(exam_id),
            exam_count()) == (code, stored, count)
    live = office.get(f"/exams/{exam_id}/live", headers=JSON).get_json()
    assert all(s["presence"] == "not_logged_in" for s in live["students"])
    # Every change view of the console is staff-only: none is missing from the list above.
    posts = {re.sub(r"<[^>]+>", str(exam_id), r.rule) for r in app.url_map.iter_rules()
             if r.endpoint.startswith("console.") and "POST" in r.methods}
    assert posts - set(changes) == {"/sign-in", "/sign-out", "/language", f"/exams/{exam_id}/invigilate"}


def test_invigilator_sign_in_tells_nothing_about_the_exam(app):
    exam_id = exam_id_of_new_exam(app)  # no password set
    for path in (f"/exams/{exam_id}/invigilate", "/exams/999999/invigilate"):
        client = app.test_client()
        page = client.get(path, headers=HTML)
        assert page.status_code == 200
        answer = post_form(client, path, path, password=INVIGILATOR_PASSWORD)
        assert answer.status_code == 401 and "Wrong password." in answer.get_data(as_text=True), path
        assert client.get(f"/exams/{exam_id}", headers=HTML).status_code == 302


def test_invigilator_password_guessing_is_cut_off(app, office):
    from proctor.web.auth import SIGN_INS_PER_ACCOUNT

    exam_id = exam_id_of_new_exam(app)
    assert set_invigilator_password(office, exam_id).status_code == 303
    client = app.test_client()
    path = f"/exams/{exam_id}/invigilate"
    for _ in range(int(SIGN_INS_PER_ACCOUNT.split()[0])):
        assert post_form(client, path, path, password="a wrong guess at it").status_code == 401
    refused = post_form(client, path, path, password=INVIGILATOR_PASSWORD)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    other = app.test_client()  # another address is not locked out by this one
    token = token_of(other, path)
    assert other.post(path, data={"password": INVIGILATOR_PASSWORD, "csrf_token": token}, headers=HTML,
                      environ_base={"REMOTE_ADDR": "127.0.0.78"}).status_code == 302


# --- admission from the exam's page -------------------------------------------------------------


def test_a_new_entry_code_and_invitations_only(app, office):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam_id = exam_id_of_new_exam(app)
    old = api.entry_code(exam_id)
    answer = post_form(office, f"/exams/{exam_id}/entry-code", f"/exams/{exam_id}", enabled="1")
    assert answer.status_code == 303 and answer.headers["Location"] == f"/exams/{exam_id}#admission"
    new = api.entry_code(exam_id)
    assert new and new != old
    assert f'id="entry-code">{new}<' in office.get(f"/exams/{exam_id}", headers=HTML).get_data(as_text=True)
    refused = api.post(f"/api/exams/{exam_id}/join", json={"student_id": "s1", "entry_code": old})
    assert refused.status_code == 403

    assert post_form(office, f"/exams/{exam_id}/entry-code", f"/exams/{exam_id}", enabled="0").status_code == 303
    assert api.entry_code(exam_id) is None
    page = office.get(f"/exams/{exam_id}", headers=HTML).get_data(as_text=True)
    assert "invitations only" in page and 'id="invitations-only"' not in page
    bad = post_form(office, f"/exams/{exam_id}/entry-code", f"/exams/{exam_id}", enabled="maybe")
    assert bad.status_code == 400 and api.entry_code(exam_id) is None


def test_let_a_student_in_shows_the_token_once(app, office):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam_id = exam_id_of_new_exam(app)
    answer = post_form(office, f"/exams/{exam_id}/let-in", f"/exams/{exam_id}", student_id=" s1 ")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    token = re.search(r'id="session-token"[^>]*>([^<]+)<', page).group(1)
    session_id = int(re.search(r'id="let-in-session">(\d+)<', page).group(1))
    assert api.heartbeat({"session_id": session_id, "token": token}).status_code == 200
    assert token not in answer.headers.get("Location", "")
    assert token not in office.get(f"/exams/{exam_id}", headers=HTML).get_data(as_text=True)
    data = office.get(f"/exams/{exam_id}/live", headers=JSON).get_json()
    assert token not in str(data)
    assert {s["student_id"]: s["presence"] for s in data["students"]}["s1"] == "online"

    # Letting the student in again (their computer changed) gives a new token; the old one stops.
    again = post_form(office, f"/exams/{exam_id}/let-in", f"/exams/{exam_id}", student_id="s1")
    assert again.status_code == 201
    assert api.heartbeat({"session_id": session_id, "token": token}).status_code == 401


def test_let_in_refusals_change_nothing(app, office):
    exam_id = exam_id_of_new_exam(app)
    outside = post_form(office, f"/exams/{exam_id}/let-in", f"/exams/{exam_id}", student_id="not-on-roster")
    assert outside.status_code == 403 and "not on the roster" in outside.get_data(as_text=True)
    malformed = post_form(office, f"/exams/{exam_id}/let-in", f"/exams/{exam_id}", student_id="a b/c")
    assert malformed.status_code == 400 and 'id="problem"' in malformed.get_data(as_text=True)
    empty = post_form(office, f"/exams/{exam_id}/let-in", f"/exams/{exam_id}", student_id="")
    assert empty.status_code == 400 and "Enter the student id." in empty.get_data(as_text=True)
    live = office.get(f"/exams/{exam_id}/live", headers=JSON).get_json()
    assert all(s["session_id"] is None for s in live["students"])


# --- login history ------------------------------------------------------------------------------


def history_rows(page: str) -> list[tuple[str, str]]:
    """(kind, class) of each line of the login history page."""
    return re.findall(r'<tr data-line="\d+" data-kind="(\w+)" class="([^"]*)">', page)


def test_the_login_history_marks_refused_and_flagged_lines(app, office):
    api = Api(AppTransport(app), ADMIN_TOKEN)
    exam_id = exam_id_of_new_exam(app)
    assert office.get(f"/exams/{exam_id}/logins", headers=HTML).get_data(as_text=True).count('id="no-logins"') == 1
    api.join(exam_id, "s1")
    assert api.try_join(exam_id, "s1").status_code == 409  # another client while s1 is online: refused
    page = office.get(f"/exams/{exam_id}/logins", headers=HTML).get_data(as_text=True)
    assert history_rows(page) == [("login", ""), ("refused", "line-refused line-flagged")]
    assert page.count('<b class="flagged">Flagged</b>') == 1 and "127.0.0.1" in page
    flagged = office.get(f"/exams/{exam_id}/logins?flagged=1", headers=HTML).get_data(as_text=True)
    assert [kind for kind, _ in history_rows(flagged)] == ["refused"]
    other = office.get(f"/exams/{exam_id}/logins?student_id=s2", headers=HTML).get_data(as_text=True)
    assert history_rows(other) == [] and 'id="no-logins"' in other

    assert set_invigilator_password(office, exam_id).status_code == 303
    watching = invigilator_of(app, exam_id)
    assert history_rows(watching.get(f"/exams/{exam_id}/logins", headers=HTML).get_data(as_text=True)) == \
        history_rows(page)
    assert watching.get(f"/exams/{exam_id_of_new_exam(app)}/logins", headers=HTML).status_code == 403


# --- language -----------------------------------------------------------------------------------


def test_the_browser_language_and_then_the_chosen_one(app):
    client = app.test_client()
    chinese = {**HTML, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    assert "登录" in client.get("/sign-in", headers=chinese).get_data(as_text=True)
    assert sign_in(client, new_account()).status_code == 302
    assert "Exams" in client.get("/exams", headers=HTML).get_data(as_text=True)
    choose = client.post("/language", data={"locale": "zh", "next": "/exams",
                                            "csrf_token": token_of(client, "/exams")}, headers=HTML)
    assert choose.status_code == 302 and choose.headers["Location"] == "/exams"
    # Kept with the account: a new browser session of the same person is in Chinese too.
    page = client.get("/exams", headers=HTML).get_data(as_text=True)
    assert "考试" in page and "退出登录" in page


def test_the_language_form_goes_back_only_to_this_site(teacher):
    token = token_of(teacher, "/exams")
    for away in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = teacher.post("/language", data={"locale": "en", "next": away, "csrf_token": token}, headers=HTML)
        assert answer.headers["Location"] == "/", away


# --- create-admin -------------------------------------------------------------------------------


def test_create_admin_reads_the_password_from_standard_input(monkeypatch, capsys, app):
    from proctor import cli

    name = unique("admin")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["create-admin", name]) == 0
    assert f'"username": "{name}"' in capsys.readouterr().out
    client = app.test_client()
    assert sign_in(client, name).status_code == 302

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["create-admin", name]) == 1  # taken
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["create-admin", unique("admin")]) == 1
    assert "at least" in capsys.readouterr().err


def test_passwords_are_kept_as_scrypt_hashes(app):
    from proctor.db import engine
    from proctor.schema import staff

    name = new_account()
    with engine().connect() as conn:
        stored = conn.execute(select(staff.c.password_hash).where(staff.c.username == name)).scalar_one()
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_password_guessing_is_cut_off(app):
    from proctor.web.auth import SIGN_INS_PER_ACCOUNT

    client = app.test_client()
    name = new_account()
    allowed = int(SIGN_INS_PER_ACCOUNT.split()[0])
    for _ in range(allowed):
        assert sign_in(client, name, "wrong password guess").status_code == 401
    refused = sign_in(client, name)  # even the right password, until the minute is over
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many attempts" in refused.get_data(as_text=True)
    other = app.test_client()  # another address is not locked out by this one
    assert sign_in(other, name, environ_base={"REMOTE_ADDR": "127.0.0.77"}).status_code == 302
