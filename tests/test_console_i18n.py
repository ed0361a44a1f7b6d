"""The console's Chinese catalog: every string of the pages and forms is translated, and the
committed compiled catalog (.mo, what the app loads) says exactly what its .po says."""
from __future__ import annotations

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
