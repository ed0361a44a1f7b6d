"""The desktop seats' settings (served by ``GET /api/config``, edited by the teacher).

The shape is the original server's ``config.json``: every seat setting it shipped is known here,
validated, and defaults to the value it shipped with. Keys this server does not know are kept and
served back as they came, at any depth (a seat may read them). What must never reach a seat is
refused by the teacher's edit and dropped by an import of the original file:

- the original's server-only keys at the top level (``SERVER_ONLY``: its database connection and
  its data directories), and
- anything that looks like a secret, at any depth: a key naming a password, secret, token,
  credential or private/API key, or a string that is a URL with a password in it.

An exam may override a few of the settings for its login answer.
"""
from __future__ import annotations

import json
import math
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from sqlalchemy import insert, select, update

from .clock import utcnow
from .db import engine
from .errors import BadRequest, TooLarge, describe
from .schema import seat_config

SERVER_ONLY = frozenset({"mysql", "redis", "database", "data_dir", "backup_data_dir"})
SECRET_KEY = re.compile(r"pass(word|wd)|pwd|secret|token|credential|api_?key|private_?key", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@\s:]*:[^/?#@\s]*@", re.IGNORECASE)
# Bounds on what is stored and served to every seat: the original's file is a few KiB.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 16

ExecutablePath = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class _Model(BaseModel):
    # extra="allow": a key this server does not know is kept, exactly as given, and served back.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class AllowedApp(_Model):
    exe: str = Field(min_length=1, max_length=260)
    name: str = Field(min_length=1, max_length=200)


class AllowedExecutable(_Model):
    path: ExecutablePath
    name: str = Field(max_length=200)


class ChromeSettings(_Model):
    disable_extensions: bool = True
    disable_dev_tools: bool = True
    disable_downloads: bool = False
    disable_printing: bool = False
    disable_new_tabs: bool = False


class RecordingSettings(_Model):
    enabled: bool = True
    fps: int = Field(2, ge=1, le=60)
    quality: int = Field(80, ge=1, le=100)
    bitrate: int = Field(200_000, ge=10_000, le=50_000_000)
    interval: int = Field(60, ge=5, le=3600)
    codec: Literal["mp4", "webm"] = "mp4"
    scale_ratio: float = Field(0.5, gt=0, le=1)


class UploadSettings(_Model):
    strategy: str = Field("distributed", min_length=1, max_length=64)
    interval: int = Field(60, ge=1, le=3600)
    max_delay: int = Field(60, ge=0, le=86_400)
    batch_size: int = Field(5, ge=1, le=100)
    retry_count: int = Field(3, ge=0, le=100)
    timeout: int = Field(60, ge=1, le=3600)


class ScreenRecording(_Model):
    recording: RecordingSettings = RecordingSettings()
    upload: UploadSettings = UploadSettings()


class SeatConfig(_Model):
    """What a seat is told by ``/api/config``: the original's seat settings, and any others kept."""

    allowed_apps: list[AllowedApp] = Field(default_factory=list, max_length=1000)
    # The original shipped {"path", "name"} objects; older files have plain paths.
    allowed_executables: list[ExecutablePath | AllowedExecutable] = Field(default_factory=list, max_length=1000)
    allowed_urls: list[str] = Field(default_factory=list, max_length=1000)
    allowed_url_patterns: list[str] = Field(default_factory=list, max_length=1000)
    default_url: str = Field("about:blank", max_length=2000)
    exam_time_limit: int = Field(120, ge=0, le=24 * 60)
    chrome_settings: ChromeSettings = ChromeSettings()
    server_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    enable_server_reporting: bool = True
    screenshot_on_violation: bool = True
    end_violation_foreground_process: bool = False
    show_violation_warning: bool = False
    enable_screen_recording: bool = True
    enable_screenshot_upload: bool = False
    screen_recording: ScreenRecording = ScreenRecording()

    @model_validator(mode="before")
    @classmethod
    def _nothing_for_the_server_only(cls, data):
        if isinstance(data, dict):
            _, withheld = without_server_keys(data)
            if withheld:
                raise ValueError(f"never served to seats, remove: {', '.join(withheld[:10])}")
        return data

    @model_serializer(mode="wrap")
    def _server_url_only_when_set(self, dump):
        # A seat already knows the address it fetched its settings from; null might replace it.
        data = dump(self)
        if data.get("server_url", "") is None:
            del data["server_url"]
        return data

    @field_validator("allowed_url_patterns")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
        return patterns


# --- what never reaches a seat ------------------------------------------------------------------


def without_server_keys(raw: dict) -> tuple[dict, list[str]]:
    """``raw`` without what must never reach a seat, and where each removed piece was (``a.b[2]``)."""
    withheld: list[str] = []
    kept = {key: _kept(value, str(key), withheld, 1) for key, value in raw.items()
            if not _withheld(key, value, str(key), withheld, top=True)}
    return kept, withheld


def _withheld(key, value, where: str, withheld: list[str], *, top: bool = False) -> bool:
    """Whether ``key: value`` (``key`` None for a list item) must not reach a seat; noted if so."""
    secret_key = key is not None and (SECRET_KEY.search(str(key)) or (top and key in SERVER_ONLY))
    if secret_key or _is_url_with_password(value):
        withheld.append(where)
        return True
    return False


def _kept(value, where: str, withheld: list[str], depth: int):
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {key: _kept(item, f"{where}.{key}", withheld, depth + 1) for key, item in value.items()
                if not _withheld(key, item, f"{where}.{key}", withheld)}
    if isinstance(value, list):
        return [_kept(item, f"{where}[{i}]", withheld, depth + 1) for i, item in enumerate(value)
                if not _withheld(None, item, f"{where}[{i}]", withheld)]
    if isinstance(value, float) and not math.isfinite(value):  # Python's JSON reads NaN; JSON has none
        raise ValueError(f"{where}: {value} is not a JSON number")
    return value


def _is_url_with_password(value) -> bool:
    return isinstance(value, str) and bool(URL_WITH_PASSWORD.match(value.strip()))


# --- stored settings ----------------------------------------------------------------------------


def seat_configuration() -> dict:
    """The teacher's seat settings, or the defaults until they are first saved."""
    with engine().connect() as conn:
        stored = conn.execute(select(seat_config.c.config).where(seat_config.c.id == 1)).scalar()
    # Only what was given is stored: a default filled in here follows this code, not the past.
    return SeatConfig.model_validate(stored or {}).model_dump()


def save_seat_configuration(new: SeatConfig) -> dict:
    config = new.model_dump(exclude_unset=True)
    with engine().begin() as conn:
        if not conn.execute(update(seat_config).where(seat_config.c.id == 1).values(config=config, updated_at=utcnow())).rowcount:
            conn.execute(insert(seat_config).values(id=1, config=config, updated_at=utcnow()))
    return new.model_dump()


def import_original(data: bytes) -> dict:
    """The original server's ``config.json`` saved as the seat settings, without its server keys.

    Returns what was kept (top-level keys, and those of them this server does not know), what
    was dropped (paths), and the seat settings now served.
    """
    raw = _json_object(data)
    try:
        kept, dropped = without_server_keys(raw)
        config = SeatConfig.model_validate(kept)
    except ValidationError as err:
        raise BadRequest(describe(err), code="invalid_config") from None
    except ValueError as err:
        raise BadRequest(str(err), code="invalid_config") from None
    return {
        "kept": list(kept),
        "unknown_kept": [key for key in kept if key not in SeatConfig.model_fields],
        "dropped": dropped,
        "config": save_seat_configuration(config),
    }


def seat_configuration_from_json(data: bytes) -> SeatConfig:
    """Seat settings typed as JSON (the console's editor), checked as ``PUT
    /api/admin/seat-config`` checks its body: a server key or a secret is refused, not dropped."""
    try:
        return SeatConfig.model_validate(_json_object(data))
    except ValidationError as err:
        raise BadRequest(describe(err), code="invalid_body") from None


def _json_object(data: bytes) -> dict:
    if len(data) > MAX_BYTES:
        raise TooLarge(f"a seat configuration may be at most {MAX_BYTES} bytes")
    try:
        raw = json.loads(data.decode("utf-8-sig"))  # Notepad saves UTF-8 with a BOM
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BadRequest(f"not a JSON file: {err}", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise BadRequest("the configuration must be one JSON object", code="invalid_json")
    return raw


def exam_seat_settings(exam) -> dict:
    """The per-exam settings the login answer carries, falling back to the seat settings."""
    config = seat_configuration()
    own = exam.settings or {}
    return {
        "default_url": own.get("default_url") or config["default_url"],
        "delay_min": own.get("delay_min", 0),
        "disable_new_tabs": own.get("disable_new_tabs", config["chrome_settings"]["disable_new_tabs"]),
    }
