"""``GET /api/openapi.json``: an OpenAPI 3.1 description of both front doors, generated from the
app's URL map and the pydantic request models.

The routes stay as they are (no decorator per view): ``OPERATIONS`` below describes each
``(method, rule)`` once, and the document walks ``app.url_map``, so it lists exactly the routes this
app serves (no seats' protocol when ``PROCTOR_LEGACY_API=0``). Path parameters come from the rule's
converters (``<id:...>`` is an integer from 1 to 2**31 - 1, as ``converters.IdConverter`` accepts);
JSON bodies are the models' ``model_json_schema()``. A route missing from ``OPERATIONS`` is left
out of the document and named by ``undescribed``, which the tests require to be empty.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import Blueprint, Flask, current_app, jsonify, request
from pydantic import BaseModel
from werkzeug.routing import Rule

from ..screenshots import KINDS
from ..seat_settings import SeatConfig
from ..segments import MAX_SEQ
from ..storage import EXTENSIONS as VIDEO_TYPES
from .converters import MAX_ID
from .legacy import ImageFields, Login, RecordingFields, SeatCall, SelectExam, ViolationFields
from .validation import EntryCode, ExamCopy, ExamCreate, ExamUpdate, Finish, Invite, Join, StudentList, ViolationIn

bp = Blueprint("openapi", __name__)

# The document changes only with a deploy; a client revalidates with the ETag after this long.
CACHE_CONTROL = "public, max-age=300"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
IGNORED_ENDPOINTS = {"static"}  # Flask's own; proctor serves no static files
IGNORED_BLUEPRINTS = {"console", "exam_taking"}  # pages for browsers (proctor/web), not the API

TEACHER, SESSION = "teacher", "session"
SECURITY_SCHEMES = {
    TEACHER: {"type": "http", "scheme": "bearer",
              "description": "The teacher's token (PROCTOR_ADMIN_TOKEN). Never in the query string."},
    SESSION: {"type": "http", "scheme": "bearer",
              "description": "A student's session token, from POST /api/exams/{exam_id}/join; "
                             "valid for that session only."},
}
SEATS = "seats"
TAGS = [
    {"name": "exams", "description": "Exams, rosters and the student's join (token API)."},
    {"name": "sessions", "description": "A student's session: heartbeat, segments, finish, recording."},
    {"name": "admin", "description": "Student registry, seat settings, logins, violations, screenshots, reports."},
    {"name": "operations", "description": "Health, statistics, metrics and this document."},
    {"name": SEATS, "description": "The desktop seats' protocol (docs/): no token, a seat is known by "
                                   "its address; answers are {status: success|error, ...}."},
]

ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"], "additionalProperties": False,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }},
}
SEAT_ERROR = {
    "type": "object", "required": ["status", "message"], "additionalProperties": False,
    "properties": {"status": {"const": "error"}, "message": {"type": "string", "minLength": 1}},
}
OBJECT = {"type": "object"}
BINARY = {"type": "string", "format": "binary"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
SEAT_OK = {"type": "object", "required": ["status"], "properties": {"status": {"const": "success"}}}
JOINED = {
    "type": "object",
    "required": ["session_id", "token", "heartbeat_interval_s", "max_segment_bytes", "next_seq"],
    "properties": {"session_id": ID, "token": {"type": "string", "minLength": 1},
                   "heartbeat_interval_s": {"type": "integer"}, "max_segment_bytes": {"type": "integer"},
                   "segment_s": {"type": "integer", "minimum": 1}, "ends_at": {"type": "string", "format": "date-time"},
                   "next_seq": {"type": "integer", "minimum": 0}},
}
HEARTBEAT = {
    "type": "object", "required": ["presence", "tracked", "server_time"],
    "properties": {"presence": {"enum": ["online", "offline"]}, "tracked": {"type": "boolean"},
                   "server_time": {"type": "string", "format": "date-time"}},
}
HEALTH = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"enum": ["ok", "down"]}, "down": {"type": "array", "items": {"type": "string"}},
                   "checks": {"type": "object"}},
}
# Path converters the app uses, as schemas; a parameter an operation names in ``path`` wins.
CONVERTERS = {
    "id": ID,
    "default": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}


def listing(key: str) -> dict:
    """An answer ``{key: [objects]}``."""
    return {"type": "object", "required": [key],
            "properties": {key: {"type": "array", "items": {"type": "object"}}}}


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    where: str = "query"
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One operation: who may call it, what it takes and what it answers on success."""

    summary: str
    tag: str
    who: tuple[str, ...] = ()  # any one of these security schemes ("" for none); () for anyone
    body: dict[str, dict | type[BaseModel]] = field(default_factory=dict)  # media type: schema or model
    body_required: bool = True
    params: tuple[Param, ...] = ()
    path: dict[str, dict] = field(default_factory=dict)
    status: int = 200
    answer: dict[str, dict] = field(default_factory=lambda: {"application/json": OBJECT})


def json_body(model: type[BaseModel]) -> dict:
    return {"application/json": model}


def seat_body(model: type[BaseModel]) -> dict:
    """The protocol sends JSON; lenient seats send the same fields as a form."""
    return {"application/json": model, "application/x-www-form-urlencoded": model}


def seat_upload(model: type[BaseModel], file_field: str, *, required: bool = True) -> dict:
    """A multipart call: the model's fields and one file part."""
    schema = model.model_json_schema()
    schema["properties"][file_field] = BINARY
    if required:
        schema["required"] = [*schema.get("required", []), file_field]
    return {"multipart/form-data": schema}


def raw(*media_types: str) -> dict:
    return {media_type: BINARY for media_type in media_types}


CAPTURED_AT = Param("X-Captured-At", {"type": "integer"}, "header", "capture time, epoch milliseconds")
TEACHER_ONLY, OWNER, STUDENT = (TEACHER,), (TEACHER, SESSION), (SESSION,)
ANYONE_OR_TEACHER = ("", TEACHER)

OPERATIONS: dict[tuple[str, str], Op] = {
    # --- exams
    ("POST", "/api/exams"): Op("Create an exam (with a roster, or open to anyone)", "exams", TEACHER_ONLY,
                               json_body(ExamCreate), status=201),
    ("GET", "/api/exams"): Op("List exams", "exams", TEACHER_ONLY, answer={"application/json": listing("exams")}),
    ("GET", "/api/exams/<id:exam_id>"): Op("One exam, with session counts", "exams", TEACHER_ONLY),
    ("PATCH", "/api/exams/<id:exam_id>"): Op("Change an exam's title, times or seat settings", "exams",
                                             TEACHER_ONLY, json_body(ExamUpdate)),
    ("DELETE", "/api/exams/<id:exam_id>"): Op(
        "Delete an exam (refused while it has recordings, unless forced)", "exams", TEACHER_ONLY,
        params=(Param("force", {"type": "string", "enum": ["0", "1", "true", "false"]}),)),
    ("GET", "/api/exams/<id:exam_id>/sessions"): Op("The exam's sessions", "exams", TEACHER_ONLY,
                                                    answer={"application/json": listing("sessions")}),
    ("POST", "/api/exams/<id:exam_id>/end"): Op("End the exam now", "exams", TEACHER_ONLY),
    ("POST", "/api/exams/<id:exam_id>/copy"): Op(
        "A new exam with this one's roster and seat settings, at other times", "exams", TEACHER_ONLY,
        json_body(ExamCopy), status=201),
    ("POST", "/api/exams/<id:exam_id>/join"): Op(
        "A student joins with the entry code or an invitation code (the teacher's token: any student)",
        "exams", ANYONE_OR_TEACHER, json_body(Join), status=201, answer={"application/json": JOINED}),
    ("POST", "/api/exams/<id:exam_id>/entry-code"): Op(
        "A new entry code (the old one stops working), or enabled false: invitations only", "exams",
        TEACHER_ONLY, json_body(EntryCode), body_required=False),
    ("POST", "/api/exams/<id:exam_id>/invitations"): Op(
        "One-use invitation codes for the named students (none named: the whole roster)", "exams",
        TEACHER_ONLY, json_body(Invite), body_required=False, status=201,
        answer={"application/json": listing("invitations")}),
    ("GET", "/api/exams/<id:exam_id>/invitations"): Op("The exam's invitations", "exams", TEACHER_ONLY,
                                                       answer={"application/json": listing("invitations")}),
    ("GET", "/api/exams/<id:exam_id>/roster"): Op("Every student of the roster and how each is doing", "exams",
                                                  TEACHER_ONLY, answer={"application/json": listing("roster")}),
    ("POST", "/api/exams/<id:exam_id>/roster"): Op("Add students to the roster", "exams", TEACHER_ONLY,
                                                   json_body(StudentList)),
    ("DELETE", "/api/exams/<id:exam_id>/roster/<student_id>"): Op(
        "Take a student off the roster", "exams", TEACHER_ONLY, status=204, answer={}),
    # --- sessions
    ("POST", "/api/sessions/<id:session_id>/heartbeat"): Op("Heartbeat", "sessions", STUDENT,
                                                            answer={"application/json": HEARTBEAT}),
    ("PUT", "/api/sessions/<id:session_id>/segments/<seq>"): Op(
        "Upload one recording segment (201 stored, 200 the same bytes again)", "sessions", STUDENT,
        raw(*VIDEO_TYPES), path={"seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}},
        params=(CAPTURED_AT, Param("X-Content-SHA256", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                                   "header", "SHA-256 of the body, checked before it is stored")),
        status=201),
    ("GET", "/api/sessions/<id:session_id>"): Op("A session's state, segments and recording", "sessions", OWNER),
    ("POST", "/api/sessions/<id:session_id>/finish"): Op("Finish: queue the merge", "sessions", OWNER,
                                                         json_body(Finish), body_required=False, status=202),
    ("POST", "/api/sessions/<id:session_id>/merge"): Op("Queue a failed merge again", "sessions", TEACHER_ONLY,
                                                        status=202),
    ("POST", "/api/sessions/<id:session_id>/release"): Op(
        "Let the other front door take the session at its next login", "sessions", TEACHER_ONLY),
    ("GET", "/api/sessions/<id:session_id>/recording"): Op("The merged recording (Range requests work)",
                                                           "sessions", OWNER, answer=raw("video/webm", "video/mp4")),
    # --- admin
    ("GET", "/api/admin/students"): Op("The student registry", "admin", TEACHER_ONLY,
                                       answer={"application/json": listing("students")}),
    ("POST", "/api/admin/students"): Op("Add or update students", "admin", TEACHER_ONLY, json_body(StudentList)),
    ("DELETE", "/api/admin/students/<student_id>"): Op("Delete a student", "admin", TEACHER_ONLY, status=204,
                                                       answer={}),
    ("POST", "/api/admin/students/import"): Op(
        "Import a CSV, .xlsx or text roster (raw, or the multipart field file)", "admin", TEACHER_ONLY,
        {**raw("text/csv", "text/plain", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
         "multipart/form-data": {"type": "object", "required": ["file"], "properties": {"file": BINARY}}},
        params=(Param("exam_id", ID, description="also put every accepted student on this exam's roster"),)),
    ("GET", "/api/admin/seat-config"): Op("The seat settings served to desktop seats", "admin", TEACHER_ONLY),
    ("PUT", "/api/admin/seat-config"): Op("Replace the seat settings", "admin", TEACHER_ONLY, json_body(SeatConfig),
                                          body_required=False),
    ("GET", "/api/exams/<id:exam_id>/logins"): Op(
        "Login history", "admin", TEACHER_ONLY,
        params=(Param("student_id", {"type": "string"}), Param("flagged", {"type": "string", "enum": ["0", "1"]})),
        answer={"application/json": listing("logins")}),
    ("POST", "/api/sessions/<id:session_id>/violations"): Op("Report a violation", "admin", STUDENT,
                                                             json_body(ViolationIn), status=201),
    ("GET", "/api/sessions/<id:session_id>/violations"): Op("A session's violations", "admin", TEACHER_ONLY,
                                                            answer={"application/json": listing("violations")}),
    ("GET", "/api/exams/<id:exam_id>/violations"): Op("An exam's violations", "admin", TEACHER_ONLY,
                                                      params=(Param("student_id", {"type": "string"}),),
                                                      answer={"application/json": listing("violations")}),
    ("POST", "/api/sessions/<id:session_id>/screenshots"): Op(
        "Upload a screenshot (raw PNG or JPEG)", "admin", STUDENT, raw("image/png", "image/jpeg"),
        params=(Param("kind", {"enum": list(KINDS)}), CAPTURED_AT), status=201),
    ("GET", "/api/sessions/<id:session_id>/screenshots"): Op(
        "A session's screenshots", "admin", TEACHER_ONLY, params=(Param("kind", {"enum": list(KINDS)}),),
        answer={"application/json": listing("screenshots")}),
    ("GET", "/api/screenshots/<id:shot_id>"): Op("One screenshot's image", "admin", TEACHER_ONLY,
                                                 answer=raw("image/png", "image/jpeg")),
    ("GET", "/api/exams/<id:exam_id>/archives"): Op("Where the exam's files were archived", "admin", TEACHER_ONLY,
                                                    answer={"application/json": listing("archives")}),
    ("GET", "/api/exams/<id:exam_id>/report.csv"): Op("The exam report", "admin", TEACHER_ONLY,
                                                      answer={"text/csv": {"type": "string"}}),
    # --- operations
    ("GET", "/health"): Op("Up or down; what is down only to the teacher", "operations",
                           answer={"application/json": HEALTH}),
    ("GET", "/stats"): Op("Queue lengths, sessions and workers", "operations", TEACHER_ONLY),
    ("GET", "/metrics"): Op("Prometheus metrics", "operations", answer={"text/plain": {"type": "string"}}),
    ("GET", "/api/openapi.json"): Op("This document", "operations"),
    # --- the desktop seats' protocol
    ("GET", "/api/server_time"): Op("The server's time", SEATS),
    ("GET", "/api/config"): Op("The seat settings", SEATS, answer={"application/json": SEAT_OK}),
    ("GET", "/api/students/<student_id>"): Op("Look a student up", SEATS, answer={"application/json": SEAT_OK}),
    ("POST", "/api/login"): Op("Log a seat in to the student's exam", SEATS, body=seat_body(Login)),
    ("POST", "/api/login/select_exam"): Op("Log in to a chosen exam", SEATS, body=seat_body(SelectExam)),
    ("POST", "/api/heartbeat"): Op("Heartbeat of a logged-in seat", SEATS, body=seat_body(SeatCall),
                                   answer={"application/json": SEAT_OK}),
    ("POST", "/api/logout"): Op("Log the seat out (finishes the session)", SEATS, body=seat_body(SeatCall),
                                answer={"application/json": SEAT_OK}),
    ("POST", "/api/screen_recording"): Op("Upload a numbered segment", SEATS,
                                          body=seat_upload(RecordingFields, "video"),
                                          answer={"application/json": SEAT_OK}),
    ("POST", "/api/screenshot"): Op("Upload a screenshot", SEATS, body=seat_upload(ImageFields, "screenshot"),
                                    answer={"application/json": SEAT_OK}),
    ("POST", "/api/screen_frame"): Op("Upload a screen frame (any file field)", SEATS,
                                      body=seat_upload(ImageFields, "frame"), answer={"application/json": SEAT_OK}),
    ("POST", "/api/violation"): Op("Report a violation, with an optional screenshot", SEATS,
                                   body=seat_upload(ViolationFields, "screenshot", required=False),
                                   answer={"application/json": SEAT_OK}),
    ("GET", "/driver/<name>"): Op("A browser driver for a seat", SEATS, answer=raw("application/octet-stream")),
}

PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def routes(app: Flask) -> list[tuple[str, Rule]]:
    """Every (method, rule) the app serves, but Flask's own."""
    return [(method, rule) for rule in app.url_map.iter_rules() if rule.endpoint not in IGNORED_ENDPOINTS
            and rule.endpoint.partition(".")[0] not in IGNORED_BLUEPRINTS
            for method in sorted(rule.methods - IGNORED_METHODS)]


def undescribed(app: Flask) -> list[str]:
    """Routes of the app that ``OPERATIONS`` does not describe."""
    return [f"{method} {rule.rule}" for method, rule in routes(app) if (method, rule.rule) not in OPERATIONS]


def document(app: Flask) -> dict:
    components: dict[str, dict] = {"Error": ERROR, "SeatError": SEAT_ERROR}
    paths: dict[str, dict] = {}
    for method, rule in routes(app):
        op = OPERATIONS.get((method, rule.rule))
        if op is not None:
            path = PARAMETER.sub(r"{\2}", rule.rule)
            paths.setdefault(path, {})[method.lower()] = _operation(op, method, rule, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "proctor", "version": "1",
                 "description": "Screen-recorded online exams. Errors of the token API are "
                                "{error: {code, message}}, the seats' protocol's {status: error, message}, "
                                "always with a 4xx status."},
        "tags": TAGS,
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": components},
    }


def _operation(op: Op, method: str, rule: Rule, components: dict) -> dict:
    out = {
        "operationId": rule.endpoint if len(rule.methods - IGNORED_METHODS) == 1 else f"{rule.endpoint}.{method}",
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{scheme: []} if scheme else {} for scheme in op.who],
        "parameters": _path_parameters(op, rule) + [_parameter(p) for p in op.params],
        "responses": _responses(op, rule),
    }
    if op.body:
        out["requestBody"] = {"required": op.body_required,
                              "content": {media: {"schema": _schema(schema, components)}
                                          for media, schema in op.body.items()}}
    return out


def _path_parameters(op: Op, rule: Rule) -> list[dict]:
    return [{"name": name, "in": "path", "required": True,
             "schema": op.path.get(name) or CONVERTERS[converter or "default"]}
            for converter, name in PARAMETER.findall(rule.rule)]


def _parameter(param: Param) -> dict:
    out = {"name": param.name, "in": param.where, "required": False, "schema": param.schema}
    if param.description:
        out["description"] = param.description
    return out


def _responses(op: Op, rule: Rule) -> dict:
    ok: dict = {"description": op.summary}
    if op.answer:
        ok["content"] = {media: {"schema": schema} for media, schema in op.answer.items()}
    error = "SeatError" if rule.endpoint.startswith("legacy.") else "Error"
    out = {str(op.status): ok,
           "4XX": {"description": "refused; nothing changed",
                   "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error}"}}}}}
    if rule.endpoint == "health.health":
        out["503"] = {"description": "a dependency is down", "content": {"application/json": {"schema": HEALTH}}}
    return out


def _schema(schema: dict | type[BaseModel], components: dict) -> dict:
    """A body's schema; a model's goes to the components (with the models it uses) by name."""
    if isinstance(schema, dict):
        return schema
    full = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in {**full.pop("$defs", {}), schema.__name__: full}.items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two request models are both named {name}")
    return {"$ref": f"#/components/schemas/{schema.__name__}"}


@bp.get("/api/openapi.json")
def openapi_json():
    if "proctor.openapi" not in current_app.extensions:  # the URL map is final once the app serves
        current_app.extensions["proctor.openapi"] = document(current_app)
    response = jsonify(current_app.extensions["proctor.openapi"])
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.add_etag()
    return response.make_conditional(request)
