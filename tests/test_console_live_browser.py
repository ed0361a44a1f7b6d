"""The live view of a hall of 500 in a real browser (Debian's chromium under Selenium, against
Gunicorn): each poll updates the table's rows in place (the same 500 row elements, counted by a
mark the test puts on them), a new violation is named in a notice the watcher dismisses, and the
script's time of one update is measured (printed and kept in the test's directory; not asserted,
the machine is shared). ``seed_exam`` also serves bench/console_live.py."""
from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import ADMIN_TOKEN, Api, HttpTransport, unique, wait_until
from tests.test_console_browser import CHROMEDRIVER, CHROMIUM, account, browser, by_id, keep, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")

HALL = 500


def seed_exam(students: int, joined: int, prefix: str | None = None) -> int:
    """An exam with ``students`` on its roster (ids ``PREFIX-i``), ``joined`` of them with an open
    session, 3 segments each and a violation for every tenth; written straight to the database, as
    500 joins through the API would take minutes of this test."""
    from sqlalchemy import insert

    from proctor import exams, presence
    from proctor.db import engine
    from proctor.schema import segments, sessions, violations

    prefix = prefix or f"b{students}"
    now = datetime.now(timezone.utc)
    exam = exams.create_exam(f"bench {students}", now - timedelta(minutes=5), now + timedelta(hours=2),
                             [{"student_id": f"{prefix}-{i}", "name": f"Student {i}"} for i in range(students)])
    with engine().begin() as conn:
        ids = [conn.execute(insert(sessions).values(
            exam_id=exam["id"], student_id=f"{prefix}-{i}", token_hash=f"{exam['id']:08x}{i:056x}", state="active",
            presence="online", joined_at=now, client_addr="127.0.0.1", door="token")).inserted_primary_key[0]
            for i in range(joined)]
        conn.execute(insert(segments), [{"session_id": sid, "run": 0, "seq": seq, "size": 1, "sha256": "0" * 64,
                                         "media_type": "video/webm", "received_at": now}
                                        for sid in ids for seq in range(3)])
        conn.execute(insert(violations), [{"session_id": sid, "reason": "left the window", "via": "token",
                                           "received_at": now} for sid in ids[::10]])
    for sid in ids:
        presence.track(sid)
    return exam["id"]


MARK_ROWS = "for (const tr of document.querySelectorAll('#students tr')) tr.proctorMark = true;"
MARKED = "return Array.from(document.querySelectorAll('#students tr')).filter(tr => tr.proctorMark).length;"


def refreshed(browser) -> int:
    return int(by_id(browser, "live").get_attribute("data-refreshed") or 0)


def polls_later(browser, n: int = 1) -> None:
    """Wait until the page has polled ``n`` more times."""
    start = refreshed(browser)
    wait_until(lambda: refreshed(browser) >= start + n, timeout=30 * n, what=f"{n} more polls of the live view")


def test_a_hall_of_500_updates_in_place_and_a_new_violation_is_noticed(browser, account, server, tmp_path):
    from proctor import presence

    prefix = unique("h")
    exam_id = seed_exam(HALL, HALL - 50, prefix)
    api = Api(HttpTransport(server), ADMIN_TOKEN)
    late = f"{prefix}-{HALL - 1}"  # not joined yet: joins through the token API during the test

    sign_in(browser, server, account)
    browser.get(f"{server}/exams/{exam_id}")
    wait_until(lambda: len(browser.find_elements("css selector", "#students tr")) == HALL, timeout=60,
               what="the 500 rows")
    assert browser.find_elements("css selector", "#notices .notice") == []  # the violations seen at first are no news
    browser.execute_script(MARK_ROWS)

    joined = api.join(exam_id, late)
    answer = api.post(f"/api/sessions/{joined['session_id']}/violations", joined["token"],
                      json={"reason": "opened another window"})
    assert answer.status_code in {200, 201}, answer.text
    wait_until(lambda: browser.find_elements("css selector", f'#notices .notice[data-student="{late}"]'), timeout=30,
               what="the notice of the new violation")
    notice = browser.find_element("css selector", f'#notices .notice[data-student="{late}"]')
    assert f"Student {HALL - 1} ({late})" in notice.text and "New violation" in notice.text
    row = browser.find_element("css selector", f'#students tr[data-student="{late}"]')
    assert row.get_attribute("data-presence") == "online" and row.find_elements("css selector", "td.flagged")
    # The rows were brought up to date, not made again: all 500 still carry the mark.
    assert browser.execute_script(MARKED) == HALL
    assert len(browser.find_elements("css selector", "#notices .notice")) == 1  # only the new violation

    notice.find_element("css selector", "button.dismiss").click()
    wait_until(lambda: not browser.find_elements("css selector", "#notices .notice"), timeout=10,
               what="the notice dismissed")
    polls_later(browser)
    assert not browser.find_elements("css selector", "#notices .notice")  # no news: it stays away

    # The filter takes rows out and puts the same ones back.
    by_id(browser, "with-violations").click()
    shown = len(browser.find_elements("css selector", "#students tr"))
    assert 0 < shown < HALL
    by_id(browser, "with-violations").click()
    assert browser.execute_script(MARKED) == HALL

    # The cost of one poll's update of the 500 rows, as the page's script measured it: when every
    # joined student has sent a heartbeat since the last poll (each of their rows changes), and
    # when nothing changed.
    everyone = [sid for sid, in sessions_of(exam_id)]
    every_row, nothing_new = [], []
    for _attempt in range(15):
        if len(every_row) == 5:
            break
        for sid in everyone:
            presence.track(sid)
        polls_later(browser)
        if int(by_id(browser, "live").get_attribute("data-changed-rows")) >= len(everyone):
            every_row.append(render_ms(browser))  # else the poll read the heartbeats half-written: again
            polls_later(browser)
            nothing_new.append(render_ms(browser))
    assert every_row, "no poll saw every heartbeat"
    report = (f"live view, {HALL} students ({len(everyone)} online), script time of one poll's update: "
              f"{statistics.median(every_row):.1f} ms median when every online row changed "
              f"({', '.join(f'{t:.1f}' for t in every_row)}), {statistics.median(nothing_new):.1f} ms when nothing did")
    (tmp_path / "live-update-ms.txt").write_text(report + "\n")
    print(report)
    keep(browser, tmp_path, "console-live-500.png")
    browser.find_element("css selector", 'form.language button[value="zh"]').click()
    wait_until(lambda: browser.find_element("tag name", "html").get_attribute("lang") == "zh-Hans"
               and len(browser.find_elements("css selector", "#students tr")) == HALL, timeout=60,
               what="the hall's live view in Chinese")
    keep(browser, tmp_path, "console-live-500-zh.png")


def render_ms(browser) -> float:
    return float(by_id(browser, "live").get_attribute("data-render-ms"))


def sessions_of(exam_id: int) -> list:
    from sqlalchemy import select

    from proctor.db import engine
    from proctor.schema import sessions

    with engine().connect() as conn:
        return conn.execute(select(sessions.c.id).where(sessions.c.exam_id == exam_id)).all()
