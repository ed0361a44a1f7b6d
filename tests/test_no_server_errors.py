"""No input, however malformed, produces a 500: every route of the app, random requests.

The routes come from the app's own URL map, so a new route is fuzzed without editing this file.
Hypothesis draws the path parameters, the method's body (JSON of any shape, raw bytes, multipart
with random fields), the Content-Type and the credentials (none, garbage, a student's, the
teacher's). Ids are drawn far above anything the suite creates, so no fixture data is touched.
The requests go through Flask's test client: the app, not the HTTP server, is what is fuzzed.

Then hostile values where they do most harm, each in an otherwise valid request by a caller allowed
to make it: integers past 32 and 64 bits and Unicode digits (², ①, ٣, ３, 𝟗) in every id and seq of
a path or a body, extreme dates (epoch ms 253402300800000 and negative, year 0001 at +14:00,
9999-12-31T23:59:59-14:00), and JSON nested 100,000 and 50,000 deep on every JSON route of both
front doors. Each must be refused with a 4xx and change no row.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlalchemy import select

from proctor.api.openapi import OPERATIONS
from proctor.db import engine
from proctor.schema import metadata
from tests.helpers import ADMIN_TOKEN, Api, AppTransport, Seat, png_image, unique

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


# --- hostile values in every id, seq and date position ------------------------------------------
# Each is sent in a request that is otherwise valid, by a caller allowed to make it, against a world
# of its own (an exam, a joined session, a screenshot, a logged-in desktop seat): it must be refused
# with a 4xx and leave that world and every table as they were.

BEYOND_32_BITS = [2**31, 2**32 + 1, -(2**31) - 1]
BEYOND_64_BITS = [2**63, 2**64 + 1, -(2**63) - 1, 10**30]
UNICODE_DIGITS = ["²", "①", "٣", "３", "𝟗", "1٣", "３2", "٣" * 9]
EXTREME_EPOCH_MS = [253402300800000, -1, -253402300800000, -62135596800001]
EXTREME_ISO = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00",
               "9999-12-31T23:59:59"]
# Past any parser's recursion, and again small enough to pass every body bound (the seats' 64 KiB).
DEEP_JSON_DEPTHS = [100_000, 50_000]
# Per position: most values come from the short lists above; the same requests on every run.
hostile_settings = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
# Written on purpose by a refused call (the teacher sees refused logins) or by the clock.
AUDIT_TABLES = {"login_events", "presence_events"}

huge_ints = (st.sampled_from(BEYOND_32_BITS + BEYOND_64_BITS) | st.integers(min_value=2**31)
             | st.integers(max_value=-(2**31) - 1))
unicode_digits = st.sampled_from(UNICODE_DIGITS) | st.text(
    alphabet="0123456789²①٣３𝟗", min_size=1, max_size=12).filter(lambda t: not t.isascii())
hostile_ids = huge_ints | unicode_digits | huge_ints.map(str)
extreme_dates = st.sampled_from(EXTREME_ISO + EXTREME_EPOCH_MS + [str(ms) for ms in EXTREME_EPOCH_MS])
extreme_epoch_ms = st.sampled_from(EXTREME_EPOCH_MS) | st.sampled_from(EXTREME_EPOCH_MS).map(str)
PATH_IDS = {"exam_id": "exam", "session_id": "session", "shot_id": "shot"}
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42" + bytes(16)  # what the type check reads of an mp4


@pytest.fixture
def world(app):
    api = Api(AppTransport(app))
    student, seat_student = unique("fz"), unique("fzseat")
    exam = api.create_exam(title="hostile", roster=[student, {"student_id": seat_student, "name": "Seat"}])
    session = api.join(exam["id"], student)
    shot = api.screenshot(session, png_image())
    assert shot.status_code == 201, shot.text
    seat = Seat(api, "127.0.11.1", seat_student, "Seat")
    assert seat.login()["status"] == "success"
    return {"exam": exam["id"], "session": session["session_id"], "shot": shot.json()["id"],
            "token": session["token"], "student": student, "seat": seat, "send": AppTransport(app, seat.addr)}


def state_of_everything() -> dict:
    """Every table's rows (but the audit's), by table."""
    with engine().connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(select(t)))) for t in metadata.sorted_tables
                if t.name not in AUDIT_TABLES}


def credentials(world: dict, method: str, rule: str) -> dict:
    """The Authorization a caller allowed to make this call sends (none for the seats' calls)."""
    op = OPERATIONS.get((method, rule))
    who = op.who if op else ("teacher",)  # an undescribed route (test_openapi says so): the teacher
    token = ADMIN_TOKEN if "teacher" in who else world["token"] if who else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def assert_refused_and_nothing_changed(world: dict, method: str, path: str, rule: str, **kwargs):
    before = state_of_everything()
    headers = {**credentials(world, method, rule), **kwargs.pop("headers", {})}
    r = world["send"](method, path, headers=headers, **kwargs)
    sent = f"{method} {path} {headers.keys() - {'Authorization'}} {repr(kwargs)[:200]}"
    assert 400 <= r.status_code < 500, f"{sent} -> {r.status_code}: {r.text[:300]}"
    assert state_of_everything() == before, f"{sent} changed something"


def fill(rule: str, world: dict, **given: str) -> str:
    values = {name: str(world[kind]) for name, kind in PATH_IDS.items()}
    values.update(seq="0", student_id=world["student"], name="driver")
    values.update(given)
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: quote(values[m.group(1)], safe=""), rule)


def routes_with_ids() -> list[tuple[str, str, str]]:
    """(method, rule, parameter) for every id or seq in a path."""
    return [(method, rule, name) for method, rule in ROUTES
            for name in re.findall(r"<(?:\w+:)?(\w+)>", rule) if name in PATH_IDS or name == "seq"]


def path_body(method: str, rule: str) -> dict:
    """What the call needs beyond its path to get as far as reading it."""
    if rule.endswith("/segments/<seq>"):
        return {"data": MP4_HEAD, "headers": {"Content-Type": "video/mp4"}}
    return {"json": {}} if method in ("POST", "PUT", "PATCH") else {}


@pytest.mark.parametrize("method,rule,name", routes_with_ids())
def test_hostile_ids_in_paths_are_refused(world, method, rule, name):
    @hostile_settings
    @given(value=hostile_ids.map(str))
    def check(value):
        path = fill(rule, world, **{name: value})
        assert_refused_and_nothing_changed(world, method, path, rule, **path_body(method, rule))

    check()


def seat_fields(world: dict) -> dict:
    return world["seat"].ids()


# (method, rule): (kind of body, the valid body, {field: hostile values}); "header:" and "query:"
# name a header or a query parameter instead of a body field.
HOSTILE_FIELDS = {
    ("POST", "/api/exams"): ("json", lambda w: {"title": "t", "starts_at": "2030-01-01T09:00:00+00:00",
                                                "ends_at": "2030-01-01T11:00:00+00:00"},
                             {"starts_at": extreme_dates, "ends_at": extreme_dates}),
    ("PATCH", "/api/exams/<id:exam_id>"): ("json", lambda w: {},
                                           {"starts_at": extreme_dates, "ends_at": extreme_dates}),
    ("POST", "/api/sessions/<id:session_id>/finish"): ("json", lambda w: {}, {"last_seq": hostile_ids}),
    ("POST", "/api/sessions/<id:session_id>/violations"): (
        "json", lambda w: {"reason": "r"},
        {"occurred_at": st.sampled_from(BEYOND_64_BITS) | extreme_dates | unicode_digits,
         "screenshot_id": hostile_ids}),
    ("PUT", "/api/sessions/<id:session_id>/segments/<seq>"): (
        "raw", lambda w: {}, {"header:X-Captured-At": extreme_epoch_ms | unicode_digits}),
    ("POST", "/api/sessions/<id:session_id>/screenshots"): (
        "raw", lambda w: {}, {"header:X-Captured-At": extreme_epoch_ms | unicode_digits}),
    ("POST", "/api/admin/students/import"): ("raw", lambda w: {}, {"query:exam_id": hostile_ids}),
    ("POST", "/api/login/select_exam"): ("json", lambda w: {"student_id": w["seat"].student_id},
                                         {"exam_id": hostile_ids}),
    ("POST", "/api/heartbeat"): ("json", seat_fields, {"exam_id": hostile_ids}),
    ("POST", "/api/logout"): ("json", seat_fields, {"exam_id": hostile_ids}),
    ("POST", "/api/screen_recording"): ("video", lambda w: {**seat_fields(w), "sequence": "0"},
                                        {"exam_id": hostile_ids, "sequence": hostile_ids, "timestamp": extreme_dates}),
    ("POST", "/api/screenshot"): ("image", seat_fields, {"exam_id": hostile_ids, "timestamp": extreme_dates}),
    ("POST", "/api/screen_frame"): ("image", seat_fields, {"exam_id": hostile_ids, "timestamp": extreme_dates}),
    ("POST", "/api/violation"): ("form", lambda w: {**seat_fields(w), "reason": "r"},
                                 {"exam_id": hostile_ids, "timestamp": extreme_dates}),
}
RAW_BODIES = {"/segments/<seq>": ("video/mp4", MP4_HEAD), "/screenshots": ("image/png", None),
              "/import": ("text/plain", b"s1 Someone\n")}


def request_with(world: dict, rule: str, kind: str, body: dict, field: str, value) -> dict:
    """The keyword arguments of the call: a valid request with ``field`` set to ``value``."""
    where, _, name = field.rpartition(":")
    headers, params = {}, {}
    if where == "header":
        headers[name] = str(value)
    elif where == "query":
        params[name] = str(value)
    else:
        body = {**body, name: value if kind == "json" else str(value)}
    if kind == "json":
        return {"json": body, "headers": headers, "params": params}
    if kind == "raw":
        media_type, data = next(v for k, v in RAW_BODIES.items() if rule.endswith(k))
        return {"data": data or png_image(), "headers": {"Content-Type": media_type, **headers}, "params": params}
    files = {"video": ("seg.mp4", MP4_HEAD)} if kind == "video" else {"screenshot": ("s.png", png_image())}
    return {"data": body, "files": files if kind != "form" else None, "headers": headers, "params": params}


@pytest.mark.parametrize("method,rule,field", [
    (method, rule, field) for (method, rule), (_, _, fields) in HOSTILE_FIELDS.items() for field in fields])
def test_hostile_ids_seqs_and_dates_in_bodies_are_refused(world, method, rule, field):
    kind, valid, fields = HOSTILE_FIELDS[(method, rule)]

    @hostile_settings
    @given(value=fields[field])
    def check(value):
        kwargs = request_with(world, rule, kind, valid(world), field, value)
        assert_refused_and_nothing_changed(world, method, fill(rule, world), rule, **kwargs)

    check()


def json_routes() -> list[tuple[str, str]]:
    return [key for key, op in OPERATIONS.items() if "application/json" in op.body]


@pytest.mark.parametrize("method,rule,depth", [
    (method, rule, depth) for method, rule in json_routes() for depth in DEEP_JSON_DEPTHS])
def test_json_nested_beyond_any_parser_is_refused(world, method, rule, depth):
    assert_refused_and_nothing_changed(world, method, fill(rule, world), rule, data=b"[" * depth,
                                       headers={"Content-Type": "application/json"})
