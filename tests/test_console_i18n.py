"""The console's Chinese catalog: every string of the pages and forms is translated, and the
committed compiled catalog (.mo, what the app loads) says exactly what its .po says."""
from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parent.parent / "proctor" / "web"
CATALOG = WEB / "translations" / "zh" / "LC_MESSAGES"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def page_strings() -> set[str]:
    return {message for _file, _line, message, _comments, _context in
            extract_from_dir(str(WEB), METHODS, keywords=KEYWORDS)}


def test_every_string_of_the_console_has_a_chinese_translation():
    strings = page_strings()
    assert len(strings) > 50
    with open(CATALOG / "messages.po", "rb") as f:
        catalog = read_po(f)
    untranslated = sorted(s for s in strings if not (catalog.get(s) and catalog.get(s).string))
    assert untranslated == [], "translate these in messages.po, then compile it (see proctor/web/i18n.py)"


def test_the_compiled_catalog_matches_its_source():
    with open(CATALOG / "messages.po", "rb") as f:
        source = {m.id: m.string for m in read_po(f) if m.id}
    with open(CATALOG / "messages.mo", "rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == source, "compile messages.po again (see proctor/web/i18n.py)"


def visible_words(page: str) -> set[str]:
    """Latin words a person reads on the page (the data block for the page's script included), but
    in elements marked lang="en" (the service layer's own messages, shown as details) or
    translate="no" (addresses and codes)."""
    import json

    labels = re.search(r'<script id="labels" type="application/json">(.*?)</script>', page, re.S)
    text = re.sub(r'<(\w+)[^>]*\b(?:lang="en"|translate="no")[^>]*>.*?</\1>', " ", page, flags=re.S)
    text = re.sub(r"<script\b.*?</script>|<[^>]+>", " ", text, flags=re.S)
    if labels:
        data = json.loads(labels.group(1))
        data.pop("lang")
        text += " " + " ".join(strings_in(data))
    return words(text)


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]{3,}", text))


def strings_in(data) -> list[str]:
    if isinstance(data, dict):
        return [s for value in data.values() for s in strings_in(value)]
    return [data]


def test_chinese_pages_have_no_english_left(app):
    from tests.helpers import Api, AppTransport
    from tests.test_console import HTML, new_account, sign_in

    client = app.test_client()
    chinese = {**HTML, "Accept-Language": "zh-CN"}
    assert visible_words(client.get("/sign-in", headers=chinese).get_data(as_text=True)) == set()
    username = new_account()
    assert sign_in(client, username).status_code == 302
    exam = Api(AppTransport(app)).create_exam(title="期末考试", roster=["s1"])
    allowed = {"UTC", "Etc"} | words(username) | words(exam["entry_code"])
    for path in ("/exams/new", f"/exams/{exam['id']}", "/exams/999999"):
        page = client.get(path, headers=chinese).get_data(as_text=True)
        assert visible_words(page) - allowed == set(), path


def test_chinese_invigilator_pages_have_no_english_left(app):
    from tests.helpers import Api, AppTransport
    from tests.test_console import HTML, invigilator_of, new_account, set_invigilator_password, sign_in

    teacher, username = app.test_client(), new_account()
    assert sign_in(teacher, username).status_code == 302
    exam = Api(AppTransport(app)).create_exam(title="期末考试", roster=["s1"])
    assert set_invigilator_password(teacher, exam["id"]).status_code == 303
    chinese = {**HTML, "Accept-Language": "zh-CN"}
    allowed = {"UTC", "Etc"} | words(username) | words(exam["entry_code"])
    let_in = teacher.post(f"/exams/{exam['id']}/let-in", headers=chinese, data={
        "student_id": "s1", "csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', teacher.get(
            f"/exams/{exam['id']}", headers=chinese).get_data(as_text=True)).group(1)})
    assert let_in.status_code == 201 and visible_words(let_in.get_data(as_text=True)) - allowed == set()
    assert Api(AppTransport(app)).try_join(exam["id"], "s1").status_code == 409  # a refused line
    watching = invigilator_of(app, exam["id"])
    for path in (f"/exams/{exam['id']}/invigilate", f"/exams/{exam['id']}", f"/exams/{exam['id']}/logins", "/exams"):
        page = watching.get(path, headers=chinese).get_data(as_text=True)
        assert visible_words(page) - allowed == set(), path
