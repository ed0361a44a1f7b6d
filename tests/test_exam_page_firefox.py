"""The browser exam page in Firefox (Debian's firefox-esr, headless, driven over WebDriver BiDi by
``tests/firefox_bidi.py``; its screen to share is an Xvfb display): a student joins with the entry
code, shares the screen, records about 12 s in segments of 4 s, ends the exam, and the merged
recording holds every segment and lasts what the page recorded. Firefox's MediaRecorder writes its
time slices as Chromium's do (the first carries the WebM header), and the merge joins them again.
"""
from __future__ import annotations

import pytest

from tests.firefox_bidi import FIREFOX, XVFB, Firefox
from tests.helpers import ADMIN_TOKEN, Api, HttpTransport, unique, wait_until
from tests.test_exam_page import merged, short_segments  # noqa: F401 - a fixture used below

pytestmark = pytest.mark.skipif(not (FIREFOX.exists() and XVFB.exists()),
                                reason="needs Debian's firefox-esr and xvfb (its screen to share)")


@pytest.fixture
def firefox(tmp_path):
    browser = Firefox(tmp_path)
    yield browser
    browser.quit()


def shown(browser: Firefox, name: str) -> int:
    """A number the page shows (recorded, sent, waiting, recorded-ms), as it keeps it on #exam."""
    return int(browser.attribute("exam", f"data-{name}") or 0)


def test_a_student_records_about_12_s_in_firefox_and_nothing_is_lost(firefox, short_segments, merge_worker,
                                                                       tmp_path):
    api = Api(HttpTransport(short_segments), ADMIN_TOKEN)
    exam = api.create_exam(title=unique("Firefox exam "))
    firefox.open(f"{short_segments}/exam/{exam['id']}")
    wait_until(lambda: firefox.displayed("join"), timeout=20, what="the join form")
    firefox.type("entry-code", api.entry_code(exam["id"]))
    firefox.type("student-id", unique("s"))
    firefox.click("join-button")
    wait_until(lambda: firefox.displayed("share-button"), timeout=20, what="the share button")
    firefox.click("share-button")
    wait_until(lambda: firefox.attribute("exam", "data-state") == "recording", timeout=20,
               what="the recording to start")
    assert firefox.run("const v = document.getElementById('preview'); return !v.paused && v.videoWidth") == 1280
    assert "token" not in firefox.run("return location.href")

    wait_until(lambda: shown(firefox, "recorded-ms") >= 12_000, timeout=90, what="about 12 s recorded")
    firefox.click("end-button")
    firefox.click("end-confirm")
    wait_until(lambda: firefox.attribute("exam", "data-state") == "done", timeout=90,
               what="the page to send everything and finish")
    assert shown(firefox, "waiting") == 0
    recorded_s = shown(firefox, "recorded-ms") / 1000
    view, duration = merged(api, exam["id"], tmp_path)
    assert view["segments"] == shown(firefox, "recorded") >= 3 and view["missing"] == []
    assert abs(duration - recorded_s) <= 1.0, (duration, recorded_s)
