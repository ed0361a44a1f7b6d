"""The console in a real browser: Debian's chromium, driven through its chromedriver by Selenium,
headless, against the app under real Gunicorn; a student joins through the token API and the live
view follows without a reload.

Screenshots of the exam list, the live view, an exam's controls and the invigilator's view are saved in the test's directory; with
PROCTOR_UPDATE_SCREENSHOTS=1 they are copied to docs/screenshots/ as well (the README shows them).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT, Api, HttpTransport, ADMIN_TOKEN, silence, unique, wait_until

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORD = "browser test password"
SCREENSHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")


def chromium(profile: Path):
    """A headless Chromium with a fresh profile that fetches nothing on its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "profile")
    yield driver
    driver.quit()


@pytest.fixture
def account():
    from proctor.web import accounts

    name = unique("teacher")
    accounts.create_staff(name, PASSWORD, accounts.TEACHER)
    return name


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def sign_in(driver, server: str, username: str) -> None:
    driver.get(f"{server}/")
    assert driver.current_url.endswith("/sign-in")
    by_id(driver, "username").send_keys(username)
    by_id(driver, "password").send_keys(PASSWORD)
    by_id(driver, "sign-in").click()
    wait_until(lambda: driver.current_url.endswith("/exams"), timeout=20, what="the exam list after sign-in")


def create_exam(driver, server: str, title: str, roster: str) -> int:
    driver.get(f"{server}/exams/new")
    by_id(driver, "title").send_keys(title)
    # The datetime-local inputs take what a person types: their fields in order (Chromium's en-US
    # layout: month, day, year, hour, minute, AM/PM).
    by_id(driver, "starts_at").send_keys("01012026", "\t", "0800AM")
    by_id(driver, "ends_at").send_keys("01012099", "\t", "0800AM")
    by_id(driver, "roster").send_keys(roster)
    by_id(driver, "create-exam").click()
    wait_until(lambda: driver.find_elements("id", "open-live"), timeout=20, what="the exam created page")
    assert by_id(driver, "entry-code").text
    return int(by_id(driver, "open-live").get_attribute("href").rsplit("/", 1)[1])


def presence_shown(driver, student_id: str) -> str:
    rows = driver.find_elements("css selector", f'#students tr[data-student="{student_id}"]')
    return rows[0].get_attribute("data-presence") if rows else ""


def keep(driver, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    if os.environ.get("PROCTOR_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / name)


def test_a_teacher_creates_an_exam_and_watches_a_student_come_and_go(browser, account, server, tmp_path):
    from proctor.status import run_status_check

    sign_in(browser, server, account)
    exam_id = create_exam(browser, server, unique("Browser exam "), "s2001 Ann Lee\ns2002 Bo Chen\n张三\n")
    by_id(browser, "open-live").click()
    wait_until(lambda: presence_shown(browser, "s2001") == "not_logged_in", timeout=20, what="the roster shown")
    assert by_id(browser, "count-not_logged_in").text == "3"

    api = Api(HttpTransport(server), ADMIN_TOKEN)
    joined = api.join(exam_id, "s2001")
    # The page is not reloaded: its polling brings the change.
    refreshed = int(by_id(browser, "live").get_attribute("data-refreshed") or 0)
    wait_until(lambda: presence_shown(browser, "s2001") == "online", timeout=20, what="the student shown online")
    assert int(by_id(browser, "live").get_attribute("data-refreshed")) > refreshed
    assert by_id(browser, "count-online").text == "1"
    row = browser.find_element("css selector", '#students tr[data-student="s2001"]')
    assert "127.0.0.1" in row.text and "Online" in row.text
    keep(browser, tmp_path, "console-live.png")

    by_id(browser, "offline-only").click()  # the filter: nobody is offline yet
    wait_until(lambda: by_id(browser, "empty").is_displayed(), timeout=10, what="the empty filter note")
    silence(joined["session_id"])
    run_status_check()
    wait_until(lambda: presence_shown(browser, "s2001") == "offline", timeout=20, what="the student shown offline")
    assert [r.get_attribute("data-student") for r in browser.find_elements("css selector", "#students tr")] == ["s2001"]

    browser.get(f"{server}/exams")
    assert browser.find_element("css selector", f'tr[data-exam="{exam_id}"]').text
    keep(browser, tmp_path, "console-exams.png")


def test_an_invigilator_watches_one_exam_and_changes_nothing(browser, account, server, tmp_path):
    api = Api(HttpTransport(server), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Invigilated exam "), roster=["s3001", "s3002"])
    other = api.create_exam(title=unique("Another exam "), roster=["s3001"])
    invigilator_password = "the hall's monitor password"

    # The teacher sets the exam's invigilator password on its page, then signs out.
    sign_in(browser, server, account)
    browser.get(f"{server}/exams/{exam['id']}")
    browser.find_element("css selector", "#controls summary").click()
    by_id(browser, "password").send_keys(invigilator_password)
    by_id(browser, "set-invigilator-password").click()
    wait_until(lambda: browser.find_elements("id", "invigilator-url"), timeout=20, what="the password set")
    keep(browser, tmp_path, "console-exam-controls.png")  # opened at #invigilators by the redirect
    sign_in_url = by_id(browser, "invigilator-url").text
    by_id(browser, "sign-out").click()
    wait_until(lambda: browser.current_url.endswith("/sign-in"), timeout=20, what="sign-in after sign-out")

    api.join(exam["id"], "s3001")
    browser.get(sign_in_url)
    by_id(browser, "password").send_keys(invigilator_password)
    by_id(browser, "invigilator-sign-in").click()
    wait_until(lambda: presence_shown(browser, "s3001") == "online", timeout=20, what="the live view, s3001 online")
    assert presence_shown(browser, "s3002") == "not_logged_in"
    assert by_id(browser, "who").text == "Invigilator (read only)"
    keep(browser, tmp_path, "console-invigilator.png")
    for control in ("controls", "new-code", "invitations-only", "let-in", "set-invigilator-password",
                    "clear-invigilator-password"):
        assert browser.find_elements("id", control) == [], control
    assert browser.find_elements("css selector", "main form") == []  # no form on the page changes anything

    # The server refuses a change all the same, even carrying the session's valid CSRF token.
    code = api.entry_code(exam["id"])
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const body = new URLSearchParams({enabled: "1",
                                          csrf_token: document.querySelector("input[name=csrf_token]").value});
        fetch(arguments[0], {method: "POST", body, credentials: "same-origin"}).then(r => done(r.status));
    """, f"{server}/exams/{exam['id']}/entry-code")
    assert status == 403 and api.entry_code(exam["id"]) == code
    by_id(browser, "open-logins").click()  # the login history is theirs to read as well
    wait_until(lambda: browser.find_elements("css selector", '#logins tr[data-kind="login"]'), timeout=20,
               what="the login history")
    browser.get(f"{server}/exams/{other['id']}")
    assert "change nothing" in by_id(browser, "error-summary").text


def test_signed_out_console_urls_lead_to_sign_in(browser, account, server):
    sign_in(browser, server, account)
    by_id(browser, "sign-out").click()
    wait_until(lambda: browser.current_url.endswith("/sign-in"), timeout=20, what="sign-in after sign-out")
    for path in ("/exams", "/exams/new", "/exams/1"):
        browser.get(server + path)
        assert browser.current_url.split("?")[0] == f"{server}/sign-in", path


def test_a_cross_site_form_post_is_refused(browser, account, server):
    from tests.test_console import exam_count

    sign_in(browser, server, account)
    before = exam_count()
    # Another site's page posting a form to the console: the browser sends no console cookie
    # with it (SameSite=Lax) and the form has no CSRF token.
    forged = (f'<form method="post" action="{server}/exams/new"><input name="title" value="forged">'
              '<input name="starts_at" value="2030-01-01T09:00"><input name="ends_at" value="2030-01-01T10:00">'
              '<button id="go">go</button></form>')
    browser.get("data:text/html;charset=utf-8," + forged)
    by_id(browser, "go").click()
    wait_until(lambda: "did not come from this site" in browser.page_source, timeout=20, what="the refusal")
    assert exam_count() == before


def test_the_chinese_console(browser, account, server):
    sign_in(browser, server, account)
    browser.find_element("css selector", 'form.language button[value="zh"]').click()
    wait_until(lambda: "考试" in browser.find_element("tag name", "h1").text, timeout=20, what="the Chinese page")
    assert by_id(browser, "sign-out").text == "退出登录"
    browser.get(f"{server}/exams/new")
    assert by_id(browser, "create-exam").text == "创建考试"
