"""A small HTTP client for the token API, as an exam client and a teacher would use it."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import requests


def iso(dt: datetime) -> str:
    return dt.isoformat()


class Api:
    def __init__(self, base: str, admin_token: str):
        self.base = base
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, token: str | None = None, **kw):
        return self.http.get(self.url(path), headers=self._auth(token, kw), **kw)

    def post(self, path: str, token: str | None = None, **kw):
        return self.http.post(self.url(path), headers=self._auth(token, kw), **kw)

    def put(self, path: str, token: str | None = None, **kw):
        return self.http.put(self.url(path), headers=self._auth(token, kw), **kw)

    def _auth(self, token, kw) -> dict:
        headers = dict(kw.pop("headers", {}) or {})
        if token == "teacher":
            headers.update(self.admin)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    # --- conveniences -------------------------------------------------------------------
    def create_exam(self, title="Exam", start_in_s=-60, length_s=3600, roster=None) -> dict:
        now = datetime.now(timezone.utc)
        body = {
            "title": title,
            "starts_at": iso(now + timedelta(seconds=start_in_s)),
            "ends_at": iso(now + timedelta(seconds=start_in_s + length_s)),
        }
        if roster is not None:
            body["roster"] = roster
        r = self.post("/api/exams", "teacher", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def join(self, exam_id: int, student_id: str) -> dict:
        r = self.post(f"/api/exams/{exam_id}/join", json={"student_id": student_id})
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, session: dict, seq: int, data: bytes, media_type="video/mp4", **headers):
        h = {"Content-Type": media_type, **headers}
        return self.put(f"/api/sessions/{session['session_id']}/segments/{seq}", session["token"], data=data, headers=h)

    def session(self, session: dict) -> dict:
        r = self.get(f"/api/sessions/{session['session_id']}", "teacher")
        assert r.status_code == 200, r.text
        return r.json()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
