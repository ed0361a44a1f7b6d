"""No input, however malformed, produces a 500: every route of the app, random requests.

The routes come from the app's own URL map, so a new route is fuzzed without editing this file.
Hypothesis draws the path parameters, the method's body (JSON of any shape, raw bytes, multipart
with random fields), the Content-Type and the credentials (none, garbage, a student's, the
teacher's). Ids are drawn far above anything the suite creates, so no fixture data is touched.
The requests go through Flask's test client: the app, not the HTTP server, is what is fuzzed.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ADMIN_TOKEN, Api, AppTransport

# Changes global seat settings other tests read; its validation is covered in test_admin.
SKIP = {("PUT", "/api/admin/seat-config")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["student_id", "student_name", "exam_id", "title", "starts_at", "ends_at", "roster", "last_seq",
     "reason", "timestamp", "sequence", "fps", "quality", "username", "students", "settings"]
) | st.text(max_size=10)
content_types = st.sampled_from(
    ["application/json", "video/mp4", "video/webm", "video/mp2t", "image/png", "text/plain",
     "multipart/form-data; boundary=xyz", "application/octet-stream", ""]
)


def routes() -> list[tuple[str, str]]:
    from server import app

    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (method, rule.rule) not in SKIP and rule.endpoint != "static":
                found.append((method, rule.rule))
    return found


def path_values(rule: str) -> st.SearchStrategy[str]:
    params = re.findall(r"<(?:(\w+):)?(\w+)>", rule)
    parts = []
    for converter, _name in params:
        if converter == "id":
            # In range (mostly no such row), and far beyond any database integer.
            parts.append(st.one_of(st.integers(min_value=10**7, max_value=2**31 - 1),
                                   st.integers(min_value=2**31, max_value=10**30)).map(str))
        else:
            parts.append(st.one_of(st.integers(-5, 10**7).map(str), st.text(min_size=1, max_size=20).filter(
                lambda t: "/" not in t and t not in {".", ".."})))

    def fill(values):
        out = rule
        for (converter, name), value in zip(params, values):
            out = out.replace(f"<{converter + ':' if converter else ''}{name}>", quote(value, safe=""), 1)
        return out

    return st.tuples(*parts).map(fill) if parts else st.just(rule)


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["none", "json", "bytes", "multipart"]))
    if kind == "json":
        return {"data": json.dumps(draw(json_values)).encode(), "ctype": "application/json"}
    if kind == "bytes":
        return {"data": draw(st.binary(max_size=2048)), "ctype": draw(content_types)}
    if kind == "multipart":
        fields = draw(st.dictionaries(field_names, st.text(max_size=20), max_size=6))
        files = {}
        if draw(st.booleans()):
            name = draw(st.sampled_from(["video", "screenshot", "file", "frame"]))
            files[name] = (draw(st.sampled_from(["a.mp4", "a.webm", "x.png", "x.exe", ""])), draw(st.binary(max_size=512)))
        return {"fields": fields, "files": files}
    return {}


@pytest.fixture(scope="module")
def student_token(app):
    api = Api(AppTransport(app))
    exam = api.create_exam(title="fuzz")
    return api.join(exam["id"], "fuzzer")["token"]


ROUTES = routes()


@pytest.fixture(autouse=True)
def short_worker_ping(monkeypatch):
    """GET /stats waits a second for the Celery workers to answer a ping, whoever answers; the
    fuzzer needs its answer to a request, not the workers, so the wait is cut short."""
    from proctor import stats

    ping = stats.workers_online
    monkeypatch.setattr(stats, "workers_online", lambda timeout=1.0: ping(timeout=0.05))


@pytest.mark.parametrize("method,rule", ROUTES)
def test_no_500(app, student_token, method, rule):
    # An address per route: the seats' calls are rate-limited per address, and a route fuzzed
    # after another's budget was spent would only ever see 429.
    send = AppTransport(app, source=f"127.0.9.{ROUTES.index((method, rule)) + 1}")
    credentials = st.sampled_from([None, "garbage", "student", "teacher"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(path=path_values(rule), body=bodies(), who=credentials,
           query=st.dictionaries(st.sampled_from(["force", "kind", "student_id", "flagged", "exam_id"]),
                                 st.text(max_size=8), max_size=2))
    def check(path, body, who, query):
        headers = {}
        if who:
            token = {"teacher": ADMIN_TOKEN, "student": student_token}.get(who, who)
            headers["Authorization"] = f"Bearer {token}"
        kwargs = {"params": query, "headers": headers}
        if "data" in body:
            kwargs["data"] = body["data"]
            if body["ctype"]:
                headers["Content-Type"] = body["ctype"]
        elif "fields" in body:
            kwargs["data"] = body["fields"]
            kwargs["files"] = body["files"] or None
        r = send(method, path, **kwargs)
        assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:300]}"
        if r.status_code >= 400:  # an error the client can read: one of the two documented shapes
            body = r.json()
            assert set(body.get("error", {})) == {"code", "message"} or (
                body.get("status") == "error" and body.get("message")
            ), f"{method} {path} -> {r.status_code}: {r.text[:300]}"

    check()
