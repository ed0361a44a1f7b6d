"""The one place configuration is read.

Every setting is an environment variable with a sane default so that a fresh checkout starts with
no configuration at all; the README's configuration table lists the same names. Nothing else in
the code base reads ``os.environ`` for proctor settings.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parent.parent

FALSE_WORDS = frozenset({"0", "false", "no", "off"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def is_true(raw: str | None, default: bool = False) -> bool:
    """A yes/no word from the environment or a query string; blank or unknown is ``default``."""
    word = (raw or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return default


def host_zone() -> tzinfo:
    """The host's time zone: ``TZ``, else the zone ``/etc/localtime`` names, else its offset now."""
    for name in (os.environ.get("TZ", "").lstrip(":"), _localtime_link()):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo


def _localtime_link() -> str:
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return ""
    return target.split("zoneinfo/", 1)[-1] if "zoneinfo/" in target else ""


class Env:
    """Typed reads of one environment mapping; a value that does not parse stops the process.

    ``gunicorn_config.py`` reads its process-level settings through it too.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        return self.environ.get(name, "").strip() or default

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SystemExit(f"configuration error: {name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SystemExit(f"configuration error: {name}={raw!r} must be at least {minimum}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        return is_true(self.environ.get(name), default)

    def address(self, name: str) -> str:
        """An http(s) address a browser is sent to, or empty when unset."""
        raw = self.text(name, "")
        if raw and not (raw.startswith(("http://", "https://")) and raw.isprintable() and " " not in raw):
            raise SystemExit(f"configuration error: {name}={raw!r} is not an http:// or https:// address")
        return raw

    def zone(self, name: str) -> tzinfo:
        """A time zone by its IANA name; unset, the host's."""
        raw = self.environ.get(name, "").strip()
        if not raw:
            return host_zone()
        try:
            return ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            raise SystemExit(f"configuration error: {name}={raw!r} is not a time zone name such as Asia/Shanghai") from None

    def path(self, name: str, default: Path) -> Path:
        raw = self.environ.get(name, "").strip()
        path = Path(raw) if raw else default
        return path if path.is_absolute() else (ROOT / path)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str
    redis_prefix: str
    admin_token: str
    secret_key: str
    heartbeat_interval_s: int
    offline_after_s: int
    max_segment_bytes: int
    segment_s: int
    merge_grace_s: int
    merge_max_attempts: int
    merge_retry_base_s: int
    retention_days: int
    legacy_api: bool
    ffmpeg: str
    ffprobe: str
    legacy_rate_limit: str
    legacy_login_rate_limit: str
    join_address_rate_limit: str
    join_exam_rate_limit: str
    join_early_s: int
    trusted_proxies: int
    max_screenshot_bytes: int
    max_import_bytes: int
    archive_dir: Path
    driver_dir: Path
    timezone: tzinfo
    end_grace_s: int
    flower_url: str

    @property
    def segments_dir(self) -> Path:
        return self.data_dir / "segments"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def screenshots_dir(self) -> Path:
        return self.data_dir / "screenshots"


    def replace(self, **changes) -> "Settings":
        """A copy with some settings changed (tests build their app from one)."""
        return replace(self, **changes)


def _kept_secret(given: str, path: Path) -> str:
    """``given`` (from the environment), or a secret generated once and kept at ``path``.

    The zero-configuration start must still have teacher authentication (the admin token) and
    signed console forms (the secret key); a secret generated on first start and stored with mode
    0600 gives that without a default anybody could guess, and the same one in every process.
    """
    if given:
        return given
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its token
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default: this process's environment)."""
    env = Env(environ)
    data_dir = env.path("PROCTOR_DATA_DIR", ROOT / "var")
    return Settings(
        data_dir=data_dir,
        database_url=env.text("DATABASE_URL", f"sqlite:///{data_dir / 'proctor.db'}"),
        redis_url=env.text("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=env.text("PROCTOR_REDIS_PREFIX", "proctor:"),
        admin_token=_kept_secret(env.text("PROCTOR_ADMIN_TOKEN", ""), data_dir / "admin_token"),
        secret_key=_kept_secret(env.text("PROCTOR_SECRET_KEY", ""), data_dir / "secret_key"),
        heartbeat_interval_s=env.integer("PROCTOR_HEARTBEAT_INTERVAL_S", 10),
        offline_after_s=env.integer("PROCTOR_OFFLINE_AFTER_S", 60),
        max_segment_bytes=env.integer("PROCTOR_MAX_SEGMENT_BYTES", 64 * 1024 * 1024),
        segment_s=env.integer("PROCTOR_SEGMENT_S", 10, minimum=1),
        merge_grace_s=env.integer("PROCTOR_MERGE_GRACE_S", 120),
        merge_max_attempts=env.integer("PROCTOR_MERGE_MAX_ATTEMPTS", 3),
        merge_retry_base_s=env.integer("PROCTOR_MERGE_RETRY_BASE_S", 5),
        retention_days=env.integer("PROCTOR_RETENTION_DAYS", 0),
        legacy_api=env.flag("PROCTOR_LEGACY_API", True),
        ffmpeg=env.text("PROCTOR_FFMPEG", "ffmpeg"),
        ffprobe=env.text("PROCTOR_FFPROBE", "ffprobe"),
        # Per client address: a whole hall behind one NAT address shares it. 500 seats make about
        # 3,000 calls a minute (heartbeats, segments, screenshots); this leaves ten times that.
        legacy_rate_limit=env.text("PROCTOR_LEGACY_RATE_LIMIT", "30000 per minute"),
        # Seat logins and name look-ups per seat (address and student).
        legacy_login_rate_limit=env.text("PROCTOR_LEGACY_LOGIN_RATE_LIMIT", "10 per minute"),
        # One budget for everything that could enumerate students (token-API joins, seat logins,
        # name look-ups): per address (a 500-seat hall behind one NAT logs in within minutes), and
        # per exam for the token API's joins from any address.
        join_address_rate_limit=env.text("PROCTOR_JOIN_ADDRESS_RATE_LIMIT", "1500 per minute"),
        join_exam_rate_limit=env.text("PROCTOR_JOIN_EXAM_RATE_LIMIT", "3000 per minute"),
        # How long before its start an exam opens for joining through the token API.
        join_early_s=env.integer("PROCTOR_JOIN_EARLY_S", 900, minimum=0),
        trusted_proxies=env.integer("PROCTOR_TRUSTED_PROXIES", 0),
        max_screenshot_bytes=env.integer("PROCTOR_MAX_SCREENSHOT_BYTES", 10 * 1024 * 1024),
        max_import_bytes=env.integer("PROCTOR_MAX_IMPORT_BYTES", 10 * 1024 * 1024),
        archive_dir=env.path("PROCTOR_ARCHIVE_DIR", data_dir / "archive"),
        driver_dir=env.path("PROCTOR_DRIVER_DIR", data_dir / "drivers"),
        timezone=env.zone("PROCTOR_TIMEZONE"),
        end_grace_s=env.integer("PROCTOR_END_GRACE_S", 600, minimum=0),
        # Where an operator's browser reaches Flower (it listens on loopback: through a proxy or
        # an SSH tunnel); the console's operations page links to it.
        flower_url=env.address("PROCTOR_FLOWER_URL"),
    )


_current: Settings | None = None


def settings() -> Settings:
    """This process's settings: those given to ``configure``, else the environment's, read once."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def configure(new: Settings) -> Settings:
    """Make ``new`` this process's settings (the app factory does, with the settings it is given)."""
    global _current
    _current = new
    return new
