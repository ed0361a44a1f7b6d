"""The browser exam page (``proctor/web/exam_taking.py``, ``static/exam.js``): a student takes an exam
with only a browser.

In-process: the pages, their headers, and what they tell before a join (nothing). In Debian's
chromium, headless, with a fake screen to share (``--auto-select-desktop-capture-source``), against
the app under real Gunicorn (segments of 4 s, told at join) and a merge worker: a student joins with
the entry code, records about 20 s while the upload URL is blocked for a while (Chrome DevTools
Protocol ``Network.setBlockedURLs``), ends the exam, and the merged recording holds every segment and
lasts what was recorded; a reload in the middle of an exam loses nothing, nor does a tab closed
during an outage and opened again; the page finishes by itself at the exam's end; stopping the
share is said at once and recorded as a violation. A screenshot of the page is saved in the test's
directory (with PROCTOR_UPDATE_SCREENSHOTS=1 also to docs/screenshots/exam-page.png).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import ADMIN_TOKEN, Api, HttpTransport, start_gunicorn, unique, wait_until
from tests.media_helpers import ffprobe_streams
from tests.test_console_browser import CHROMEDRIVER, CHROMIUM, by_id, keep

SEGMENT_S = 4


# --- in-process ----------------------------------------------------------------------------------


def test_the_page_tells_nothing_before_the_join_and_allows_no_inline_script(client):
    missing = client.get("/exam/2147483647", headers={"Accept-Language": "en"})
    assert missing.status_code == 200  # the same page as for a real exam: the join says the rest
    page = missing.get_data(as_text=True)
    assert 'data-exam="2147483647"' in page and 'id="join-form"' in page
    policy = missing.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy and "unsafe-inline" not in policy
    assert missing.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page and " style=" not in page and " on" + "click=" not in page
    assert client.get("/exam/0").status_code == 404


def test_the_exam_number_is_asked_then_opened(client):
    asked = client.get("/exam", headers={"Accept-Language": "en"})
    assert asked.status_code == 200 and 'id="exam-refused"' not in asked.get_data(as_text=True)
    opened = client.get("/exam?exam=12")
    assert opened.status_code == 302 and opened.headers["Location"].endswith("/exam/12")
    for wrong in ("abc", "-3", "0", "99999999999", "١٢"):
        refused = client.get(f"/exam?exam={wrong}", headers={"Accept-Language": "en"})
        assert refused.status_code == 200 and 'id="exam-refused"' in refused.get_data(as_text=True), wrong


def test_the_pages_are_in_chinese_for_a_chinese_browser(client):
    from tests.test_console_i18n import strings_in, visible_words, words

    chinese = {"Accept-Language": "zh-CN,zh;q=0.9"}
    page = client.get("/exam/5", headers=chinese).get_data(as_text=True)
    assert 'lang="zh-Hans"' in page and "加入考试" in page
    texts = json.loads(page.split('<script id="texts" type="application/json">')[1].split("</script>")[0])
    assert texts.pop("lang") == "zh-CN"
    products = {"JavaScript", "Chrome", "Edge", "Firefox"}  # names, as Chinese text writes them too
    assert (visible_words(page) | words(" ".join(strings_in(texts)))) - products == set()
    assert visible_words(client.get("/exam", headers=chinese).get_data(as_text=True)) == set()


def test_the_join_tells_the_segment_length_and_the_end(api):
    exam = api.create_exam(title=unique("Page join "))
    joined = api.join(exam["id"], unique("s"))
    assert joined["segment_s"] >= 1 and joined["ends_at"] == exam["ends_at"]


# --- in the browser --------------------------------------------------------------------------------


pytestmark_browser = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                        reason="needs Debian's chromium and chromium-driver")


@pytest.fixture(scope="module")
def short_segments():
    """The app under Gunicorn telling the page to cut segments of SEGMENT_S seconds and to
    heartbeat every 2 s."""
    # A closed tab's session counts as gone soon: the reopened tab's join waits for that.
    proc, base = start_gunicorn("gunicorn-exam-page.log", PROCTOR_SEGMENT_S=str(SEGMENT_S),
                                PROCTOR_HEARTBEAT_INTERVAL_S="2", PROCTOR_OFFLINE_AFTER_S="6")
    yield base
    proc.stop()


@pytest.fixture
def student_browser(tmp_path):
    """Headless chromium whose screen sharing picks the (fake) entire screen without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900", "--lang=en-US",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--auto-select-desktop-capture-source=Entire screen"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shown(driver, name: str) -> int:
    """A number the page shows (recorded, sent, waiting, recorded-ms), as it keeps it on #exam."""
    return int(by_id(driver, "exam").get_attribute(f"data-{name}") or 0)


def join_and_share(driver, base: str, api: Api, exam_id: int, student_id: str) -> None:
    join(driver, base, api, exam_id, student_id)
    share(driver)


def join(driver, base: str, api: Api, exam_id: int, student_id: str) -> None:
    driver.get(f"{base}/exam/{exam_id}")
    wait_until(lambda: by_id(driver, "join").is_displayed(), timeout=20, what="the join form")
    by_id(driver, "entry-code").send_keys(api.entry_code(exam_id))
    by_id(driver, "student-id").send_keys(student_id)
    by_id(driver, "join-button").click()


def share(driver) -> None:
    wait_until(lambda: by_id(driver, "share-button").is_displayed(), timeout=20, what="the share button")
    by_id(driver, "share-button").click()
    wait_until(lambda: by_id(driver, "exam").get_attribute("data-state") == "recording", timeout=20,
               what="the recording to start")
    assert driver.execute_script("const v = document.getElementById('preview'); return !v.paused && v.videoWidth")
    assert "token" not in driver.current_url


def end_exam(driver) -> None:
    by_id(driver, "end-button").click()
    by_id(driver, "end-confirm").click()
    wait_until(lambda: by_id(driver, "exam").get_attribute("data-state") == "done", timeout=90,
               what="the page to send everything and finish")
    assert shown(driver, "waiting") == 0


def merged(api: Api, exam_id: int, tmp_path: Path) -> tuple[dict, float]:
    """The student's session once merged, and its recording's duration (ffprobe)."""
    [row] = api.roster_sessions(exam_id)
    view = api.wait_for_state(row["id"])
    assert view["state"] == "merged", view
    video = api.get(f"/api/sessions/{row['id']}/recording", "teacher")
    assert video.status_code == 200
    path = tmp_path / "merged.webm"
    path.write_bytes(video.content)
    return view, float(ffprobe_streams(path)["format"]["duration"])


@pytestmark_browser
def test_a_student_records_about_20_s_through_a_blocked_upload_and_nothing_is_lost(
        student_browser, short_segments, merge_worker, tmp_path):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Browser exam "))
    join_and_share(driver, short_segments, api, exam["id"], unique("s"))
    wait_until(lambda: shown(driver, "sent") >= 1, timeout=30, what="a first segment sent")

    # The upload URL is unreachable for a while: segments wait in IndexedDB.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/segments/*"]})
    sent = shown(driver, "sent")
    wait_until(lambda: shown(driver, "waiting") >= 2, timeout=60, what="segments waiting while blocked")
    assert shown(driver, "sent") == sent
    keep(driver, tmp_path, "exam-page.png")
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

    wait_until(lambda: shown(driver, "recorded-ms") >= 20_000, timeout=120, what="about 20 s recorded")
    end_exam(driver)
    recorded_s = shown(driver, "recorded-ms") / 1000
    view, duration = merged(api, exam["id"], tmp_path)
    assert view["segments"] == shown(driver, "recorded") >= 5 and view["missing"] == []
    assert abs(duration - recorded_s) <= 1.0, (duration, recorded_s)


@pytestmark_browser
def test_a_reload_in_the_middle_of_the_exam_loses_nothing(student_browser, short_segments, merge_worker, tmp_path):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Reloaded exam "))
    join_and_share(driver, short_segments, api, exam["id"], unique("s"))
    # Segments recorded but not yet sent when the page goes away: they wait in IndexedDB.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/segments/*"]})
    wait_until(lambda: shown(driver, "waiting") >= 2, timeout=60, what="segments waiting")
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    driver.refresh()

    # The same session goes on (no new join: the token is in the tab), sending what was left.
    share(driver)
    assert not by_id(driver, "join").is_displayed()
    wait_until(lambda: shown(driver, "recorded") >= 6, timeout=60, what="more segments after the reload")
    end_exam(driver)
    view, _ = merged(api, exam["id"], tmp_path)
    assert view["segments"] == shown(driver, "recorded") and view["missing"] == [], (view, by_id(driver, "problem").text)
    logins = api.get(f"/api/exams/{exam['id']}/logins", "teacher").json()
    assert [line["kind"] for line in logins["logins"]] == ["login", "logout"]  # the reload did not join again


@pytestmark_browser
def test_a_closed_tab_opened_again_joins_again_and_sends_what_the_browser_kept(
        student_browser, short_segments, merge_worker, tmp_path):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Reopened exam "))
    student_id = unique("s")
    join_and_share(driver, short_segments, api, exam["id"], student_id)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/segments/*"]})
    wait_until(lambda: shown(driver, "waiting") >= 2, timeout=60, what="segments waiting")
    closed = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.switch_to.window(closed)
    driver.close()  # the tab, its token (sessionStorage) and its recorder are gone; IndexedDB stays
    driver.switch_to.window(driver.window_handles[0])

    # The code again (a new token, same session): the join waits until the closed tab counts as
    # gone, then what IndexedDB kept is sent before any new recording.
    join(driver, short_segments, api, exam["id"], student_id)
    wait_until(lambda: by_id(driver, "share-button").is_displayed(), timeout=60, what="the join to go through")
    wait_until(lambda: shown(driver, "waiting") == 0 and shown(driver, "sent") == shown(driver, "recorded") >= 2,
               timeout=60, what="the kept segments sent")
    kept = shown(driver, "recorded")
    share(driver)
    wait_until(lambda: shown(driver, "recorded") > kept, timeout=30, what="a new segment")
    end_exam(driver)
    view, _ = merged(api, exam["id"], tmp_path)
    assert view["segments"] == shown(driver, "recorded") and view["missing"] == [], view


@pytestmark_browser
def test_stopping_the_share_is_said_at_once_and_recorded_as_a_violation(student_browser, short_segments):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Shared exam "))
    join_and_share(driver, short_segments, api, exam["id"], unique("s"))
    # What the browser's own "stop sharing" button does to the shared track.
    driver.execute_script("document.getElementById('preview').srcObject.getVideoTracks()[0]"
                          ".dispatchEvent(new Event('ended'))")
    assert by_id(driver, "share-stopped").is_displayed() and by_id(driver, "share-button").is_displayed()
    assert by_id(driver, "exam").get_attribute("data-state") == "idle"
    [row] = api.roster_sessions(exam["id"])
    found = wait_until(lambda: api.get(f"/api/sessions/{row['id']}/violations", "teacher").json()["violations"],
                       timeout=20, what="the violation recorded")
    assert "screen sharing stopped" in found[0]["reason"]
    [student] = api.get(f"/api/exams/{exam['id']}/roster", "teacher").json()["roster"]
    assert student["violations"] == 1  # what the teacher's live view counts
    share(driver)  # sharing again goes on recording
    assert not by_id(driver, "share-stopped").is_displayed()


@pytestmark_browser
def test_a_wrong_code_is_refused_in_the_page_and_keeps_nothing(student_browser, short_segments):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Guarded exam "))
    driver.get(f"{short_segments}/exam/{exam['id']}")
    wait_until(lambda: by_id(driver, "join").is_displayed(), timeout=20, what="the join form")
    by_id(driver, "entry-code").send_keys("WRONG-CODE")
    by_id(driver, "student-id").send_keys("s1")
    by_id(driver, "join-button").click()
    wait_until(lambda: by_id(driver, "problem").is_displayed(), timeout=20, what="the refusal")
    assert by_id(driver, "problem").text == "This code is not valid for this exam."
    assert by_id(driver, "join").is_displayed() and not by_id(driver, "share").is_displayed()
    assert driver.execute_script("return sessionStorage.length") == 0
    assert api.roster_sessions(exam["id"]) == []


@pytestmark_browser
def test_the_page_finishes_by_itself_at_the_exams_end(student_browser, short_segments, merge_worker, tmp_path):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Ending exam "), start_in_s=-60, length_s=75)  # ends in 15 s
    join_and_share(driver, short_segments, api, exam["id"], unique("s"))
    [row] = api.roster_sessions(exam["id"])
    assert api.session(row["id"])["presence"] == "online"  # heartbeats at the join's interval
    wait_until(lambda: by_id(driver, "time-left").text.startswith("0:00:"), timeout=10, what="the time left")
    wait_until(lambda: by_id(driver, "exam").get_attribute("data-state") == "done", timeout=90,
               what="the page to finish at the end")
    view, duration = merged(api, exam["id"], tmp_path)
    assert view["segments"] == shown(driver, "recorded") >= 2 and duration > 5


@pytestmark_browser
def test_an_extension_made_after_the_join_keeps_the_page_recording(student_browser, short_segments):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Extended exam "), start_in_s=-60, length_s=75)  # ends in 15 s
    join_and_share(driver, short_segments, api, exam["id"], unique("s"))
    later = datetime.fromisoformat(exam["ends_at"]) + timedelta(minutes=10)
    assert api.patch(f"/api/exams/{exam['id']}", json={"ends_at": later.isoformat()}).status_code == 200
    [row] = api.roster_sessions(exam["id"])
    told = datetime.fromisoformat(api.session(row["id"])["exam_ends_at"])
    assert abs((told - later).total_seconds()) < 1
    # The end the page was told at its join passes; it asks the server and goes on to the new one.
    wait_until(lambda: by_id(driver, "time-left").text.startswith(("0:09:", "0:10:")), timeout=60,
               what="the page to learn the extension")
    assert by_id(driver, "exam").get_attribute("data-state") == "recording"
    end_exam(driver)


@pytestmark_browser
def test_an_invitation_code_alone_joins(student_browser, short_segments):
    driver, api = student_browser, Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Invited exam "))
    student_id = unique("s")
    invited = api.post(f"/api/exams/{exam['id']}/invitations", "teacher", json={"students": [student_id]})
    assert invited.status_code == 201, invited.text
    driver.get(f"{short_segments}/exam/{exam['id']}")
    wait_until(lambda: by_id(driver, "join").is_displayed(), timeout=20, what="the join form")
    by_id(driver, "invitation-code").send_keys(invited.json()["invitations"][0]["code"])
    by_id(driver, "join-button").click()
    share(driver)
    assert by_id(driver, "invitation-code").get_attribute("value") == ""  # not left in the page
    [row] = api.roster_sessions(exam["id"])
    assert row["student_id"] == student_id
