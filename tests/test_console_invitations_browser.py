"""Invitation slips in a real browser (Debian's chromium through Selenium, against Gunicorn): the
teacher goes from the exam's page to its invitations, issues them, and the answer prints as slips
only (the print stylesheet: no console bar, no notes, no slip cut by a page break); the print
button prints; a printed code joins. The browser and sign-in are those of test_console_browser.py.
"""
from __future__ import annotations

import base64
import re

from tests.helpers import ADMIN_TOKEN, Api, HttpTransport, unique, wait_until
from tests.test_console_browser import account, browser, by_id, keep, pytestmark, sign_in  # noqa: F401

HALL = 20


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def test_a_teacher_prints_the_invitation_slips(browser, account, server, tmp_path):
    api = Api(HttpTransport(server), ADMIN_TOKEN)
    roster = [{"student_id": f"p{n}", "name": f"Student {n}"} for n in range(1, HALL + 1)]
    exam = api.create_exam(title=unique("Printed "), roster=roster)
    sign_in(browser, server, account)

    browser.get(f"{server}/exams/{exam['id']}")
    browser.find_element("css selector", "#controls summary").click()
    by_id(browser, "open-invitations").click()
    wait_until(lambda: browser.find_elements("id", "invitations-form"), timeout=20, what="the invitations page")
    by_id(browser, "invite-missing").click()
    wait_until(lambda: browser.find_elements("id", "slips"), timeout=20, what="the slips")
    slips = browser.find_elements("css selector", ".slip")
    assert [s.get_attribute("data-student") for s in slips] == [r["student_id"] for r in roster]
    keep(browser, tmp_path, "console-invitation-slips.png")

    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    for hidden in ("header.bar", "#shown-once", "#print", "#back-to-invitations"):
        assert not browser.find_element("css selector", hidden).is_displayed(), hidden
    assert all(s.is_displayed() and s.value_of_css_property("break-inside") == "avoid" for s in slips)
    keep(browser, tmp_path, "console-invitation-slips-print.png")
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"])
    (tmp_path / "invitation-slips.pdf").write_bytes(pdf)  # as the teacher's printer gets it (A4)
    # Several slips to a sheet of A4 (cut apart along the dashed lines): more than one page for the
    # hall, far fewer pages than slips.
    assert pdf.startswith(b"%PDF") and 1 < pdf_pages(pdf) <= HALL // 4, pdf_pages(pdf)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})

    # The print button opens the browser's printing (recorded here instead of a dialog).
    browser.execute_script("window.printed = 0; window.print = () => { window.printed += 1; };")
    by_id(browser, "print").click()
    assert browser.execute_script("return window.printed") == 1

    code = slips[2].find_element("css selector", ".invitation-code").text
    joined = api.post(f"/api/exams/{exam['id']}/join", json={"invitation_code": code})
    assert joined.status_code == 201 and api.session(joined.json())["student_id"] == "p3"
