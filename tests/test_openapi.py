"""The OpenAPI document (``GET /api/openapi.json``) describes every route, validates as OpenAPI 3,
and Schemathesis, generating requests from it for every operation, never gets a 500 nor an answer
that contradicts the document.

Schemathesis runs in this process against the WSGI app, a bounded number of examples per
operation, derandomized (the same requests on every run). Each operation gets a world of its own:
an exam, a joined session, a screenshot and a logged-in desktop seat. An id the generator draws
below ``FOREIGN_IDS`` is replaced by this world's (ids that small belong to other tests of the run,
whose data must not be touched); larger ones stay and name nothing.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from proctor.api import openapi
from proctor.api.headers import ALWAYS
from tests.helpers import ADMIN_TOKEN, Api, AppTransport, Seat, png_image, unique
from tests.test_no_server_errors import short_worker_ping  # noqa: F401 - autouse: /stats answers at once

EXAMPLES_PER_OPERATION = 25
FOREIGN_IDS = 10**7
OPERATIONS = sorted(openapi.OPERATIONS)
IDS = {"exam_id": "exam", "session_id": "session", "shot_id": "shot"}

# The generator draws raw bodies for these types; their content is checked by magic bytes anyway.
for media_type in ("video/webm", "video/mp4", "video/mp2t", "image/png", "image/jpeg", "text/csv", "text/plain",
                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"):
    schemathesis.openapi.media_type(media_type, st.binary(max_size=512))


def test_every_route_of_the_app_is_described(app):
    assert openapi.undescribed(app) == [], "describe these routes in proctor/api/openapi.py OPERATIONS"


def test_every_description_names_a_route_of_the_app(app):
    served = {(method, rule.rule) for method, rule in openapi.routes(app)}
    assert set(openapi.OPERATIONS) - served == set()


def test_a_new_route_is_named_until_described(app_with):
    extra = app_with()
    extra.add_url_rule("/api/undescribed", "undescribed", lambda: "", methods=["POST"])
    assert openapi.undescribed(extra) == ["POST /api/undescribed"]


def test_the_document_is_openapi_3_cached_and_secured(client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    validate(r.get_json())
    assert r.headers["Cache-Control"] == openapi.CACHE_CONTROL
    for name, value in ALWAYS.items():  # the security headers of every answer
        assert r.headers[name] == value
    again = client.get("/api/openapi.json", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_the_document_names_security_and_the_seats_protocol(client):
    doc = client.get("/api/openapi.json").get_json()
    assert set(doc["components"]["securitySchemes"]) == {"teacher", "session"}
    assert doc["paths"]["/api/exams"]["post"]["security"] == [{"teacher": []}]
    assert doc["paths"]["/api/sessions/{session_id}/heartbeat"]["post"]["security"] == [{"session": []}]
    assert doc["paths"]["/api/login"]["post"]["tags"] == ["seats"]
    exam_id = doc["paths"]["/api/exams/{exam_id}"]["get"]["parameters"][0]
    assert exam_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def test_without_the_seats_protocol_the_document_leaves_it_out(app_with):
    doc = app_with(legacy_api=False).test_client().get("/api/openapi.json").get_json()
    validate(doc)
    assert "/api/login" not in doc["paths"] and "/api/exams" in doc["paths"]


# --- Schemathesis ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def source_of(method: str, rule: str) -> str:
    """An address per operation: the seats' calls are rate-limited per address."""
    return f"127.0.10.{OPERATIONS.index((method, rule)) + 1}"


@pytest.fixture
def world(request, app):
    """An exam with a student joined through the token API (and one of their screenshots) and a
    desktop seat logged in from the operation's address: what small ids are replaced by."""
    api = Api(AppTransport(app))
    student, seat_student = unique("st"), unique("seat")
    exam = api.create_exam(title="schemathesis", roster=[student, {"student_id": seat_student, "name": "Seat"}])
    session = api.join(exam["id"], student)
    shot = api.screenshot(session, png_image())
    assert shot.status_code == 201, shot.text
    seat = Seat(api, source_of(*request.node.callspec.params.values()), seat_student, "Seat")
    assert seat.login()["status"] == "success"
    return {"exam": exam["id"], "session": session["session_id"], "shot": shot.json()["id"],
            "token": session["token"], "seat": seat.ids()}


def own_ids(case, world: dict) -> None:
    """Ids small enough to be another test's become this world's; a seat's call naming such an
    exam names the logged-in seat."""
    for name, kind in IDS.items():
        value = (case.path_parameters or {}).get(name)
        if isinstance(value, int) and value < FOREIGN_IDS:
            case.path_parameters[name] = world[kind]
    if isinstance((case.query or {}).get("exam_id"), int) and case.query["exam_id"] < FOREIGN_IDS:
        case.query["exam_id"] = world["exam"]
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("exam_id"), int) and body["exam_id"] < FOREIGN_IDS:
        body.update(world["seat"])


@pytest.mark.parametrize("method,rule", OPERATIONS, ids=[f"{m} {r}" for m, r in OPERATIONS])
def test_schemathesis(request, app, schema, world, method, rule):
    if (method, rule) == ("PUT", "/api/admin/seat-config"):
        request.getfixturevalue("seat_config")  # the seat settings are global: back to the defaults after
    operation = schema[openapi.PARAMETER.sub(r"{\2}", rule)][method]
    who = openapi.OPERATIONS[(method, rule)].who
    tokens = {"teacher": ADMIN_TOKEN, "session": world["token"]}
    source = source_of(method, rule)

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), scheme=st.sampled_from(who) if who else st.none())
    def check(case, scheme):
        own_ids(case, world)
        headers = {"Authorization": f"Bearer {tokens[scheme]}"} if scheme else {}
        response = case.call(headers=headers, environ_base={"REMOTE_ADDR": source})
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance],
                               headers=headers)

    check()
