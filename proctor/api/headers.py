"""Headers on every answer: nothing proctor serves may be sniffed into something a browser runs,
framed by another page, or kept in a cache when it carries a token."""
from __future__ import annotations

from flask import Flask

# The API answers JSON, CSV, images and video: none of them needs a script, a style or a frame.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


def install(app: Flask) -> None:
    @app.after_request
    def _secure(response):
        for name, value in ALWAYS.items():
            response.headers.setdefault(name, value)
        return response


def no_store(response):
    """For an answer that carries a secret (a session token): no cache may keep it."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
