"""Request bodies, validated by pydantic models; any failure is a 400 naming the field.

A JSON body is read only once its length is known to be within a bound (``MAX_JSON_BYTES`` unless
the call takes a whole roster): a body that says it is larger is refused before a byte is read,
and one sent without a length (chunked) is cut off at the bound.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, TypeVar

from flask import request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from werkzeug.exceptions import RequestEntityTooLarge

from ..clock import EARLIEST, LATEST, in_office_zone, in_range
from ..errors import BadRequest, TooLarge, describe
from ..imports import parse_roster_text

StudentId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.@+-]+$")]


def _storable(moment: datetime) -> datetime:
    in_range(moment)  # a ValueError: pydantic names the field
    return moment


# ISO 8601; a time without an offset is the exam office's local time (PROCTOR_TIMEZONE).
ExamTime = Annotated[datetime, AfterValidator(in_office_zone), AfterValidator(_storable)]
# Epoch milliseconds (X-Captured-At, a violation's occurred_at) within the times proctor keeps.
EpochMs = Annotated[int, Field(ge=int(EARLIEST.timestamp() * 1000), le=int(LATEST.timestamp() * 1000), strict=True)]
# A join, a finish, a violation: a few fields. Bodies that carry rosters have their own bound.
MAX_JSON_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A JSON or form body. Unknown fields are ignored, so a client newer than this server (or the
    desktop seats, which send more than the server reads) is not refused; strings are stripped."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class RosterEntry(Body):
    student_id: StudentId
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


Students = list[StudentId | RosterEntry]
# Not stripped: the line numbers of refused lines must be the teacher's.
RosterText = Annotated[str, StringConstraints(strip_whitespace=False)]


class StudentsBody(Body):
    """Students as a list (the field ``LIST``: ids or ``{student_id, name}``) or as a text roster
    (``LIST + "_text"``: ``student_id name`` per line, a name alone gets a generated id), not both.
    A refused line of the text refuses the body."""

    LIST: ClassVar[str]
    _entries: list[dict] | None = PrivateAttr(None)
    _generated: list[dict] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _read_students(self):
        items, text = getattr(self, self.LIST), getattr(self, f"{self.LIST}_text")
        if items is not None and text is not None:
            raise ValueError(f"give {self.LIST} or {self.LIST}_text, not both")
        if text is not None:
            report = parse_roster_text(text)
            if report.rejected:
                lines = "; ".join(f"line {r['row']}: {r['reason']}" for r in report.rejected[:5])
                raise ValueError(f"{self.LIST}_text: {lines}")
            self._entries, self._generated = report.accepted, report.generated
        elif items is not None:
            self._entries = roster_entries(items)
        return self

    def generated(self) -> list[dict]:
        """The ids made for name-only lines of the text: ``{row, student_id, name}``."""
        return self._generated


class ExamCreate(StudentsBody):
    LIST = "roster"
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    starts_at: ExamTime
    ends_at: ExamTime
    roster: Students | None = Field(default=None, max_length=100_000)
    roster_text: RosterText | None = None

    def students(self) -> list[dict] | None:
        """The roster's rows; None for an exam without a roster."""
        return self._entries


class ExamCopy(Body):
    """A copy of an exam at other times (no title: the exam's and " (copy)")."""

    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    starts_at: ExamTime
    ends_at: ExamTime


def roster_entries(items: list[str | RosterEntry]) -> list[dict]:
    """Roster items as rows, one per student id (a repeated id keeps its last name)."""
    seen: dict[str, dict] = {}
    for item in items:
        entry = RosterEntry(student_id=item) if isinstance(item, str) else item
        seen[entry.student_id] = {"student_id": entry.student_id, "name": entry.name}
    return list(seen.values())


class ExamSettings(Body):
    """Seat settings of one exam, given to legacy seats at login."""

    default_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    delay_min: Annotated[int, Field(ge=0, le=24 * 60, strict=True)] | None = None
    disable_new_tabs: bool | None = None


class ExamUpdate(Body):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    starts_at: ExamTime | None = None
    ends_at: ExamTime | None = None
    settings: ExamSettings | None = None

    def changes(self) -> dict:
        """Only what the body named; a field given as null is refused rather than cleared."""
        out = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                raise BadRequest(f"{name} may not be null", code="invalid_body")
            out[name] = value.model_dump(exclude_unset=True) if name == "settings" else value
        return out


class StudentList(StudentsBody):
    """Students for a roster or the registry: ``students`` or ``students_text``, at least one."""

    LIST = "students"
    students: Students | None = Field(default=None, min_length=1, max_length=100_000)
    students_text: RosterText | None = None

    @model_validator(mode="after")
    def _someone(self):
        if not self._entries:
            raise ValueError("students or students_text must name at least one student")
        return self

    def entries(self) -> list[dict]:
        return self._entries


Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class Join(Body):
    """A student's proof (``student_id`` with the exam's ``entry_code``, or an ``invitation_code``
    alone), or only ``student_id`` with the teacher's token."""

    student_id: StudentId | None = None
    entry_code: Code | None = None
    invitation_code: Code | None = None


class EntryCode(Body):
    enabled: bool = True


class Invite(Body):
    """Students to (re-)invite; none named: the whole roster."""

    students: list[StudentId] | None = Field(default=None, min_length=1, max_length=100_000)


class Finish(Body):
    last_seq: Annotated[int, Field(ge=0, le=999_999, strict=True)] | None = None


class ViolationIn(Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    occurred_at: EpochMs | None = None
    screenshot_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] | None = None


def parse(model: type[M], *, allow_empty: bool = False, limit: int = MAX_JSON_BYTES) -> M:
    """The JSON body as ``model``; 413 beyond ``limit`` bytes, 400 for anything else wrong."""
    data = _json_body(limit)
    if data is None and allow_empty and not request.get_data(cache=True):
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(describe(err), code="invalid_body") from None


def _json_body(limit: int):
    """The decoded body (None when it is no JSON), read only up to ``limit`` bytes."""
    too_large = TooLarge(f"a JSON body may be at most {limit} bytes", code="body_too_large")
    if (request.content_length or 0) > limit:
        raise too_large
    # A chunked body is cut one byte past the bound: werkzeug's cut alone is silent.
    request.max_content_length = limit + 1
    try:
        if len(request.get_data(cache=True)) > limit:  # whatever the Content-Type: allow_empty reads it too
            raise too_large
        return request.get_json(silent=True)
    except RequestEntityTooLarge:
        raise too_large from None
    except RecursionError:  # nested deeper than Python's parser goes: "silent" does not catch it
        raise BadRequest("the JSON body is nested too deeply", code="invalid_json") from None


def check_schedule(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise BadRequest("ends_at must be after starts_at", code="invalid_body")
