"""The student detail page in a real browser (Debian's chromium through Selenium, as in
test_console_browser.py): a recording made of FFmpeg segments uploaded through the token API and
merged by the real Celery merge worker plays in the page's player, which knows its duration and
seeks in it (Range requests), and a violation's screenshot shows.

Its screenshot is saved as console-student.png (to docs/screenshots/ with
PROCTOR_UPDATE_SCREENSHOTS=1, as the other browser tests' are).
"""
from __future__ import annotations

from tests.helpers import png_image, silence, unique, wait_until
from tests.media_helpers import make_clip
from tests.test_console_browser import account, browser, by_id, keep, pytestmark, sign_in  # noqa: F401

CLIPS = 3  # one-second segments


def test_the_student_page_plays_the_merged_recording_and_shows_the_violation(browser, account, server,  # noqa: F811
                                                                             http_api, merge_worker, tmp_path):
    from proctor.status import run_status_check

    api = http_api
    # A short exam, so that the few seconds of the student's session show on its timeline.
    exam = api.create_exam(title=unique("Recorded exam "), start_in_s=-20, length_s=120,
                           roster=[{"student_id": "s4001", "name": "Ann Lee"}, "s4002"])
    joined = api.join(exam["id"], "s4001")
    silence(joined["session_id"])  # the student's connection drops for a while, then comes back
    run_status_check()
    assert api.heartbeat(joined).json()["presence"] == "online"
    for seq in range(CLIPS):
        data = make_clip(tmp_path / f"clip-{seq}.mp4", seconds=1.0).read_bytes()
        assert api.upload(joined, seq, data).status_code == 201
    shot = api.screenshot(joined, png_image(160, 90, rgb=(30, 120, 200)), kind="violation")
    assert shot.status_code == 201, shot.text
    reported = api.post(f"/api/sessions/{joined['session_id']}/violations", joined["token"],
                        json={"reason": "a second screen was connected", "screenshot_id": shot.json()["id"]})
    assert reported.status_code == 201, reported.text
    api.finish(joined, last_seq=CLIPS - 1)
    recording = api.wait_for_state(joined)["recording"]
    assert recording["status"] == "merged", recording

    # From the live view, the student's row leads to their page.
    sign_in(browser, server, account)
    browser.get(f"{server}/exams/{exam['id']}")
    wait_until(lambda: browser.find_elements("css selector", '#students tr[data-student="s4001"] a'), timeout=20,
               what="the student's link in the live view")
    browser.find_element("css selector", '#students tr[data-student="s4001"] a').click()
    wait_until(lambda: browser.find_elements("id", "player"), timeout=20, what="the student detail page")
    assert browser.current_url == f"{server}/exams/{exam['id']}/students/s4001"

    duration = wait_until(lambda: browser.execute_script(
        "const v = document.querySelector('video'); return v.readyState >= 1 ? v.duration : null;"),
        timeout=30, what="the player to load the recording's metadata")
    assert abs(duration - recording["duration"]) <= 0.5, (duration, recording["duration"])
    # Seeking asks the server for a range of the file.
    seeked = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const v = document.querySelector('video');
        v.addEventListener('seeked', () => done(v.currentTime), {once: true});
        v.addEventListener('error', () => done(-1), {once: true});
        v.currentTime = arguments[0];
    """, recording["duration"] - 1.0)
    assert abs(seeked - (recording["duration"] - 1.0)) <= 0.5

    image = browser.find_element("css selector", "#violations img.shot")
    wait_until(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", image),
               timeout=20, what="the violation's screenshot to show")
    assert browser.execute_script("return arguments[0].naturalWidth;", image) == 160
    assert "a second screen was connected" in by_id(browser, "violations").text
    assert browser.find_elements("css selector", "#timeline rect.span-online")
    assert [r.get_attribute("data-kind") for r in browser.find_elements("css selector", "#spans tbody tr")] == \
        ["online", "offline", "online"]
    browser.set_window_size(1400, 2400)  # the whole page in the screenshot, the player included
    keep(browser, tmp_path, "console-student.png")
