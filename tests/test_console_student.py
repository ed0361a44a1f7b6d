"""The student detail page in this process (Flask's test client): who may see it, its media and
merging again; what it shows (presence timeline, login history, violations, screenshots, merge
report); the recording served with Range and the screenshots served as images only. Merges run
in this process through ``merge.merge_session`` (real FFmpeg); the page in a real browser, with a
merge by the Celery worker, is in test_console_browser.py."""
from __future__ import annotations

import re

import pytest

from tests.helpers import ADMIN_TOKEN, Api, AppTransport, png_image, silence, unique, wait_until
from tests.media_helpers import make_clip
from tests.test_console import (HTML, JSON, invigilator_of, new_account, post_form, set_invigilator_password,
                                sign_in, token_of)
from tests.test_console_i18n import visible_words, words

IMAGE = {"Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}


@pytest.fixture(scope="module")
def office(app):
    """One teacher for the module: sign-ins from 127.0.0.1 share one budget for the whole suite."""
    client = app.test_client()
    assert sign_in(client, new_account()).status_code == 302
    return client


@pytest.fixture
def api(app):
    return Api(AppTransport(app), ADMIN_TOKEN)


def page_of(exam_id: int, student_id: str) -> str:
    return f"/exams/{exam_id}/students/{student_id}"


def merged_student(api, tmp_path, student_id: str = "s1", clips: int = 2,
                   title: str | None = None) -> tuple[dict, dict]:
    """An exam whose student recorded ``clips`` one-second clips, finished, and was merged (by the
    merge service itself, in this process)."""
    exam = api.create_exam(title=title or unique("Student page "), roster=[student_id, "s2"])
    joined = api.join(exam["id"], student_id)
    for seq in range(clips):
        data = make_clip(tmp_path / f"{student_id}-{seq}.mp4", seconds=1.0).read_bytes()
        assert api.upload(joined, seq, data).status_code == 201
    api.finish(joined, last_seq=clips - 1)
    merged_here(api, joined, "merged")
    return exam, joined


def merged_here(api, joined: dict, state: str) -> None:
    """Merge the session in this process until it is in ``state``. A merge worker that another
    test of this process started consumes the merge queue too: while it holds the session's merge,
    this one is skipped, so ask again until the session got there (by either)."""
    from proctor import merge

    def reached() -> bool:
        merge.merge_session(joined["session_id"])  # "skipped" while the worker holds it, or once done
        return api.session(joined)["state"] == state

    wait_until(reached, timeout=120, interval=0.5, what=f"the session to be {state}")


def violation_with_screenshot(api, joined: dict, image: bytes, reason: str = "phone on the desk") -> int:
    shot = api.screenshot(joined, image, kind="violation")
    assert shot.status_code == 201, shot.text
    shot_id = shot.json()["id"]
    answer = api.post(f"/api/sessions/{joined['session_id']}/violations", joined["token"],
                      json={"reason": reason, "screenshot_id": shot_id})
    assert answer.status_code == 201, answer.text
    return shot_id


def recording_status(api, joined: dict) -> dict:
    return api.session(joined)["recording"]


# --- who may see what ---------------------------------------------------------------------------


def test_signed_out_the_page_and_its_media_lead_to_sign_in_or_401(app, api):
    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    shot_id = violation_with_screenshot(api, joined, png_image())
    client = app.test_client()
    page = page_of(exam["id"], "s1")
    for path in (page, f"{page}/recording", f"/exams/{exam['id']}/screenshots/{shot_id}", f"{page}/merge-state"):
        for accept in (HTML, IMAGE, {**HTML, "Range": "bytes=0-9"}):
            answer = client.get(path, headers=accept)
            assert answer.status_code == 302 and answer.headers["Location"].startswith("/sign-in"), path
            assert b"PNG" not in answer.data
        assert client.get(path, headers=JSON).status_code == 401, path
    refused = client.post(f"{page}/merge", data={"csrf_token": token_of(client)}, headers=HTML)
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/sign-in")


def test_an_invigilator_of_another_exam_is_refused_page_and_media(app, api, office, tmp_path):
    exam, joined = merged_student(api, tmp_path)
    shot_id = violation_with_screenshot(api, joined, png_image())
    other = api.create_exam(roster=["s1"])
    assert set_invigilator_password(office, other["id"]).status_code == 303
    watching = invigilator_of(app, other["id"])
    page = page_of(exam["id"], "s1")
    for path in (page, f"{page}/recording", f"/exams/{exam['id']}/screenshots/{shot_id}", f"{page}/merge-state"):
        answer = watching.get(path, headers=HTML)
        assert answer.status_code == 403 and b"change nothing" in answer.data, path
    # Nor through their own exam's address: a screenshot is served only under its own exam.
    assert watching.get(f"/exams/{other['id']}/screenshots/{shot_id}", headers=IMAGE).status_code == 404
    assert office.get(f"/exams/{other['id']}/screenshots/{shot_id}", headers=IMAGE).status_code == 404


def test_an_invigilator_sees_the_page_but_may_not_merge_again(app, api, office):
    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    shot_id = violation_with_screenshot(api, joined, png_image())
    api.finish(joined)  # no worker here: the recording stays queued, and may be queued again
    assert set_invigilator_password(office, exam["id"]).status_code == 303
    watching = invigilator_of(app, exam["id"])
    page = page_of(exam["id"], "s1")

    answer = watching.get(page, headers=HTML)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and 'id="presence-timeline"' in text and 'id="violations"' in text
    assert 'id="merge-again"' not in text and "/merge\"" not in text
    assert watching.get(f"/exams/{exam['id']}/screenshots/{shot_id}", headers=IMAGE).status_code == 200
    before = recording_status(api, joined)
    refused = post_form(watching, f"{page}/merge", page)  # with the session's valid CSRF token
    assert refused.status_code == 403
    assert recording_status(api, joined)["updated_at"] == before["updated_at"]

    staff_page = office.get(page, headers=HTML).get_data(as_text=True)
    assert 'id="merge-again"' in staff_page


def test_merging_again_needs_the_csrf_token_and_queues_the_merge(api, office):
    from proctor import locks, merge

    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    # A merge worker that another test of this process started would take the merges queued here:
    # hold the session's merge as a running one would, so that only what the page does happens.
    held = locks.Lease(merge.lease_name(joined["session_id"]))
    assert held.acquire()
    try:
        merge_again_from_the_page(api, office, joined, exam)
    finally:
        held.release()


def merge_again_from_the_page(api, office, joined: dict, exam: dict) -> None:
    from proctor import merge, states
    from proctor.db import engine

    assert api.upload(joined, 0, b"\x00\x00\x00\x18ftypmp42 not really a video").status_code == 201
    api.finish(joined, last_seq=0)
    with engine().begin() as conn:  # as after the last attempt failed
        states.fail(conn, joined["session_id"], "every attempt failed")
    assert api.session(joined)["state"] == "failed"
    page = page_of(exam["id"], "s1")
    text = office.get(page, headers=HTML).get_data(as_text=True)
    assert 'id="merge-again"' in text and "every attempt failed" in text

    assert office.post(f"{page}/merge", headers=HTML).status_code == 400  # no CSRF token
    assert api.session(joined)["state"] == "failed"
    answer = post_form(office, f"{page}/merge", page)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{page}#recording"
    view = api.session(joined)
    assert view["state"] == "finished" and view["recording"]["status"] == "queued"
    assert view["recording"]["attempts"] == 0
    following = office.get(page, headers=HTML).get_data(as_text=True)
    assert 'data-follow="1"' in following and f'data-state-url="{page}/merge-state"' in following
    assert office.get(f"{page}/merge-state", headers=JSON).get_json()["status"] == "queued"
    assert merge.attempts(joined["session_id"]) == 0


def test_a_merged_recording_offers_no_merge_again_and_refuses_one(api, office, tmp_path):
    exam, joined = merged_student(api, tmp_path)
    page = page_of(exam["id"], "s1")
    text = office.get(page, headers=HTML).get_data(as_text=True)
    assert 'id="merge-again"' not in text and 'id="player"' in text
    refused = post_form(office, f"{page}/merge", page)
    assert refused.status_code == 409 and api.session(joined)["state"] == "merged"


# --- media --------------------------------------------------------------------------------------


def test_the_recording_answers_ranges_with_the_right_bytes(api, office, tmp_path):
    from proctor import sessions

    exam, joined = merged_student(api, tmp_path)
    path, _media_type, _sha = sessions.recording_file(joined["session_id"])
    whole = path.read_bytes()
    url = f"{page_of(exam['id'], 's1')}/recording"

    full = office.get(url)
    assert full.status_code == 200 and full.data == whole
    assert full.headers["Accept-Ranges"] == "bytes"
    part = office.get(url, headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206 and part.data == whole[100:1124]
    assert part.headers["Content-Range"] == f"bytes 100-1123/{len(whole)}"
    tail = office.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == whole[-10:]
    for answer in (full, part):
        assert answer.mimetype == "video/mp4"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert answer.headers["Content-Disposition"] == f"inline; filename=recording-{joined['session_id']}.mp4"
    assert office.get(url, headers={"Range": f"bytes={len(whole) + 10}-"}).status_code == 416


def test_no_recording_yet_is_a_404_and_an_unknown_student_too(api, office):
    exam = api.create_exam(roster=["s1", "s2"])
    api.join(exam["id"], "s1")
    page = page_of(exam["id"], "s1")
    assert office.get(f"{page}/recording", headers=JSON).status_code == 404
    not_joined = office.get(page_of(exam["id"], "s2"), headers=HTML)
    assert not_joined.status_code == 200 and 'id="not-joined"' in not_joined.get_data(as_text=True)
    assert office.get(f"{page_of(exam['id'], 's2')}/recording", headers=JSON).status_code == 404
    assert office.get(page_of(exam["id"], "nobody"), headers=HTML).status_code == 404
    assert office.get(page_of(999999, "s1"), headers=HTML).status_code == 404


def test_a_hostile_screenshot_is_served_as_the_image_type_it_was_stored_as(api, office):
    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    # A PNG signature, then a page: stored (the first bytes are a PNG's), never served as HTML.
    hostile = b"\x89PNG\r\n\x1a\n<html><script>alert(document.cookie)</script></html>"
    shot_id = violation_with_screenshot(api, joined, hostile, reason="<img src=x onerror=alert(1)>")
    answer = office.get(f"/exams/{exam['id']}/screenshots/{shot_id}", headers=HTML)
    assert answer.status_code == 200 and answer.data == hostile
    assert answer.mimetype == "image/png"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Disposition"] == f"inline; filename=screenshot-{shot_id}.png"
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    page = office.get(page_of(exam["id"], "s1"), headers=HTML).get_data(as_text=True)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # the reason, escaped


# --- what the page shows ------------------------------------------------------------------------


def test_the_page_shows_presence_spans_logins_violations_and_screenshots(app, api, office):
    from proctor.status import run_status_check

    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    assert api.try_join(exam["id"], "s1").status_code == 409  # in use elsewhere: a refused line
    silence(joined["session_id"])
    run_status_check()
    rejoined = api.join(exam["id"], "s1")  # the client started again: a restart
    shot_id = violation_with_screenshot(api, rejoined, png_image(), reason="left the exam window")
    periodic = api.screenshot(rejoined, png_image(rgb=(0, 90, 200)))
    assert periodic.status_code == 201
    api.finish(rejoined)

    text = office.get(page_of(exam["id"], "s1"), headers=HTML).get_data(as_text=True)
    spans = re.findall(r'<tr data-kind="(\w+)" class="presence-\w+">', text)
    assert spans[:3] == ["online", "offline", "online"], spans
    assert re.search(r'<rect class="span-offline" data-kind="offline" x="[0-9.]+%"', text)
    lines = re.findall(r'<tr data-line="\d+" data-kind="(\w+)" class="([^"]*)">', text)
    assert [kind for kind, _ in lines] == ["login", "refused", "rejoin", "logout"]
    assert ("refused", "line-refused line-flagged") in lines and ("rejoin", "line-restart") in lines
    assert {'class="mark-login"', 'class="mark-refused"', 'class="mark-rejoin"', 'class="mark-violation"'} <= \
        set(re.findall(r'class="mark-\w+"', text))
    assert "left the exam window" in text
    assert text.count(f'src="/exams/{exam["id"]}/screenshots/{shot_id}"') == 2  # the violation's and the gallery's
    assert f'/exams/{exam["id"]}/screenshots/{periodic.json()["id"]}' in text


def test_the_merge_report_says_gaps_and_merges(api, office, tmp_path):
    exam = api.create_exam(roster=["s1"])
    joined = api.join(exam["id"], "s1")
    for seq in (0, 2):  # seq 1 never arrives
        data = make_clip(tmp_path / f"gap-{seq}.mp4", seconds=1.0).read_bytes()
        assert api.upload(joined, seq, data).status_code == 201
    api.finish(joined, last_seq=2)
    with_grace_over(joined["session_id"])
    merged_here(api, joined, "partial")
    text = office.get(page_of(exam["id"], "s1"), headers=HTML).get_data(as_text=True)
    assert re.search(r'id="gaps"><span class="code flagged" translate="no">1</span>', text)
    assert re.search(r'id="merges">1<', text) and 'id="player"' in text
    assert re.search(r'id="recording-duration">2\.\d s<', text)


def with_grace_over(session_id: int) -> None:
    """As if the merge's grace for missing segments had run out (the session finished long ago)."""
    from datetime import timedelta

    from sqlalchemy import update

    from proctor.clock import utcnow
    from proctor.db import engine
    from proctor.schema import sessions

    with engine().begin() as conn:
        conn.execute(update(sessions).where(sessions.c.id == session_id)
                     .values(finished_at=utcnow() - timedelta(hours=1)))


def test_the_chinese_page_has_no_english_left(app, api, tmp_path):
    client, username = app.test_client(), new_account()
    assert sign_in(client, username).status_code == 302
    exam, joined = merged_student(api, tmp_path, student_id="s7", title="期末考试")
    violation_with_screenshot(api, joined, png_image(), reason="手机")
    chinese = {**HTML, "Accept-Language": "zh-CN"}
    allowed = {"UTC", "Etc"} | words(username) | words(exam["entry_code"])
    for student_id in ("s7", "s2"):
        page = client.get(page_of(exam["id"], student_id), headers=chinese).get_data(as_text=True)
        assert visible_words(page) - allowed == set(), student_id
