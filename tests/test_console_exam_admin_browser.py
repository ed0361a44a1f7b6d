"""Changing an exam in a real browser (Debian's chromium through Selenium, against Gunicorn): a
roster file chosen in the file picker comes back as its report row by row, and an extension shows
the exam's new end time. The browser and sign-in are those of test_console_browser.py."""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.helpers import ADMIN_TOKEN, Api, HttpTransport, unique, wait_until
from tests.test_console_browser import account, browser, by_id, keep, pytestmark, sign_in  # noqa: F401


def test_a_teacher_uploads_a_roster_and_extends_the_exam(browser, account, server, tmp_path, suite_settings):
    api = Api(HttpTransport(server), ADMIN_TOKEN)
    kept, new = unique("b"), unique("b")
    exam = api.create_exam(title=unique("Browser roster "), roster=[kept])
    sign_in(browser, server, account)

    browser.get(f"{server}/exams/{exam['id']}")
    browser.find_element("css selector", "#exam-changes summary").click()
    by_id(browser, "open-roster").click()
    wait_until(lambda: browser.find_elements("id", "import-form"), timeout=20, what="the roster page")
    roster = tmp_path / "hall.csv"
    roster.write_text(f"student_id,name\n{new},Ann Lee\n{kept},Bo Chen\n,no id\n", encoding="utf-8")
    by_id(browser, "file").send_keys(str(roster))  # what choosing the file in the picker does
    by_id(browser, "import").click()
    wait_until(lambda: browser.find_elements("id", "import-report"), timeout=20, what="the import report")
    rows = [(r.get_attribute("data-outcome"), r.find_elements("tag name", "td")[1].text)
            for r in browser.find_elements("css selector", "#import-rows tbody tr")]
    assert rows == [("added", new), ("already", kept), ("refused", "")]  # in the file's order
    assert "Ann Lee" in by_id(browser, "import-rows").text and by_id(browser, "roster-size").text == "2"
    keep(browser, tmp_path, "console-roster-import.png")
    on_roster = {r["student_id"] for r in api.get(f"/api/exams/{exam['id']}/roster", "teacher").json()["roster"]}
    assert on_roster == {new, kept}

    by_id(browser, "back-to-exam").click()
    wait_until(lambda: browser.find_elements("id", "exam-changes"), timeout=20, what="the exam's page")
    browser.find_element("css selector", "#exam-changes summary").click()
    minutes = by_id(browser, "minutes")
    minutes.clear()
    minutes.send_keys("45")
    keep(browser, tmp_path, "console-exam-changes.png")
    by_id(browser, "extend").click()
    new_end = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=45)
    shown = new_end.astimezone(suite_settings.timezone).strftime("%Y-%m-%d %H:%M")
    wait_until(lambda: browser.current_url.endswith("#exam-changes") and by_id(browser, "exam-ends-at").text == shown,
               timeout=20, what="the new end time shown")
    assert datetime.fromisoformat(api.get(f"/api/exams/{exam['id']}", "teacher").json()["ends_at"]) == new_end
