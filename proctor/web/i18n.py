"""The console's languages: English and Simplified Chinese (the original system's users are Chinese
universities). The language is the one the person chose (kept with their account, or in the
browser session before signing in), else the best of the browser's Accept-Language, else English.
The source strings are English; the Chinese catalog is ``translations/zh/LC_MESSAGES/messages.po``,
committed together with its compiled ``.mo`` (tests/test_console_i18n.py checks they agree and
that every string of the pages is translated), so nothing is compiled or fetched at run time;
``babel.cfg`` says how to update them.
"""
from __future__ import annotations

from pathlib import Path

from flask import Flask, g, request, session
from flask_babel import Babel

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Each language named in its own language, as a language menu shows them.
LANGUAGES = {"en": "English", "zh": "简体中文"}
DEFAULT = "en"


def chosen_locale() -> str:
    for choice in (getattr(g.get("staff"), "locale", None), session.get("locale")):
        if choice in LANGUAGES:
            return choice
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT


def install(app: Flask) -> None:
    Babel(app, locale_selector=chosen_locale, default_translation_directories=str(TRANSLATIONS))
