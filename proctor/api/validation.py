"""Request bodies, validated by pydantic models; any failure is a 400 naming the field."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, TypeVar

from flask import request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..errors import BadRequest

StudentId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.@+-]+$")]

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class RosterEntry(Strict):
    student_id: StudentId
    name: Annotated[str, StringConstraints(max_length=200)] | None = None


class ExamCreate(Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    roster: list[StudentId | RosterEntry] | None = Field(default=None, max_length=100_000)

    def students(self) -> list[dict] | None:
        return None if self.roster is None else roster_entries(self.roster)


def roster_entries(items: list[str | RosterEntry]) -> list[dict]:
    """Roster items as rows, one per student id (a repeated id keeps its last name)."""
    seen: dict[str, dict] = {}
    for item in items:
        entry = RosterEntry(student_id=item) if isinstance(item, str) else item
        seen[entry.student_id] = {"student_id": entry.student_id, "name": entry.name}
    return list(seen.values())


class ExamSettings(Strict):
    """Seat settings of one exam, given to legacy seats at login."""

    default_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    delay_min: Annotated[int, Field(ge=0, le=24 * 60, strict=True)] | None = None
    disable_new_tabs: bool | None = None


class ExamUpdate(Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
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


class StudentList(Strict):
    """A list of students for a roster or the registry: ids or ``{student_id, name}``."""

    students: list[StudentId | RosterEntry] = Field(min_length=1, max_length=100_000)

    def entries(self) -> list[dict]:
        return roster_entries(self.students)


class Join(Strict):
    student_id: StudentId


class Finish(Strict):
    last_seq: Annotated[int, Field(ge=0, le=999_999, strict=True)] | None = None


class ViolationIn(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    occurred_at: Annotated[int, Field(ge=0, strict=True)] | None = None  # epoch ms, like X-Captured-At
    screenshot_id: Annotated[int, Field(ge=1, strict=True)] | None = None


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def parse(model: type[M], *, allow_empty: bool = False) -> M:
    data = request.get_json(silent=True)
    if data is None and allow_empty and not request.get_data(cache=True):
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(describe(err), code="invalid_body") from None


def describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts[:5])


def check_schedule(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise BadRequest("ends_at must be after starts_at", code="invalid_body")
