"""The one place configuration is read.

Every setting is an environment variable with a sane default so that a fresh checkout starts with
no configuration at all; the README's configuration table lists the same names. Nothing else in
the code base reads ``os.environ`` for proctor settings.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name}={raw!r} is not an integer") from None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in {"0", "false", "no", "off"}


def _path(name: str, default: Path) -> Path:
    raw = os.environ.get(name, "").strip()
    path = Path(raw) if raw else default
    return path if path.is_absolute() else (ROOT / path)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str
    redis_prefix: str
    admin_token: str
    heartbeat_interval_s: int
    offline_after_s: int
    max_segment_bytes: int
    merge_grace_s: int
    merge_max_attempts: int
    merge_retry_base_s: int
    retention_days: int
    legacy_api: bool
    ffmpeg: str
    ffprobe: str
    # issue 5: administration and the legacy seats
    legacy_rate_limit: str
    legacy_login_rate_limit: str
    trusted_proxies: int
    max_screenshot_bytes: int
    max_import_bytes: int
    archive_dir: Path

    @property
    def segments_dir(self) -> Path:
        return self.data_dir / "segments"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def screenshots_dir(self) -> Path:
        return self.data_dir / "screenshots"


def _admin_token(data_dir: Path) -> str:
    """PROCTOR_ADMIN_TOKEN, or a token generated once and kept in the data directory.

    The zero-configuration start must still have teacher authentication; a token generated on first
    start and stored with mode 0600 gives that without a default password anybody could guess.
    """
    token = os.environ.get("PROCTOR_ADMIN_TOKEN", "").strip()
    if token:
        return token
    path = data_dir / "admin_token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its token
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def load_settings() -> Settings:
    data_dir = _path("PROCTOR_DATA_DIR", ROOT / "var")
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL", "").strip()
        or f"sqlite:///{data_dir / 'proctor.db'}",
        redis_url=os.environ.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0",
        redis_prefix=os.environ.get("PROCTOR_REDIS_PREFIX", "").strip() or "proctor:",
        admin_token=_admin_token(data_dir),
        heartbeat_interval_s=_int("PROCTOR_HEARTBEAT_INTERVAL_S", 10),
        offline_after_s=_int("PROCTOR_OFFLINE_AFTER_S", 60),
        max_segment_bytes=_int("PROCTOR_MAX_SEGMENT_BYTES", 64 * 1024 * 1024),
        merge_grace_s=_int("PROCTOR_MERGE_GRACE_S", 120),
        merge_max_attempts=_int("PROCTOR_MERGE_MAX_ATTEMPTS", 3),
        merge_retry_base_s=_int("PROCTOR_MERGE_RETRY_BASE_S", 5),
        retention_days=_int("PROCTOR_RETENTION_DAYS", 0),
        legacy_api=_bool("PROCTOR_LEGACY_API", True),
        ffmpeg=os.environ.get("PROCTOR_FFMPEG", "").strip() or "ffmpeg",
        ffprobe=os.environ.get("PROCTOR_FFPROBE", "").strip() or "ffprobe",
        # Per client address. Seats behind one NAT address share it: raise it for such halls.
        legacy_rate_limit=os.environ.get("PROCTOR_LEGACY_RATE_LIMIT", "").strip() or "600 per minute",
        legacy_login_rate_limit=os.environ.get("PROCTOR_LEGACY_LOGIN_RATE_LIMIT", "").strip()
        or "60 per minute",
        trusted_proxies=_int("PROCTOR_TRUSTED_PROXIES", 0),
        max_screenshot_bytes=_int("PROCTOR_MAX_SCREENSHOT_BYTES", 10 * 1024 * 1024),
        max_import_bytes=_int("PROCTOR_MAX_IMPORT_BYTES", 10 * 1024 * 1024),
        archive_dir=_path("PROCTOR_ARCHIVE_DIR", data_dir / "archive"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings of this process, read once."""
    return load_settings()
