"""Flower settings from the environment, so that no password appears on a command line.

    celery -A celery_config.celery_app flower --conf=scripts/flowerconfig.py

Used by scripts/start_flower.sh and systemd/proctor-flower.service. Flower executes this file and
takes every global whose name is one of its options.

  PROCTOR_FLOWER_ADDRESS     address to listen on (default 127.0.0.1: loopback only)
  PROCTOR_FLOWER_PORT        port (default 5555)
  PROCTOR_FLOWER_USER        basic-auth user (default admin)
  PROCTOR_FLOWER_PASSWORD    basic-auth password; required, Flower refuses to start without it
                             (scripts/start_flower.sh generates one into var/flower_password)
  PROCTOR_FLOWER_URL_PREFIX  path prefix when a proxy serves Flower below a path, e.g. "flower"
                             for https://host/flower/ (default: none)
"""
import os as _os

_user = _os.environ.get("PROCTOR_FLOWER_USER", "").strip() or "admin"
_password = _os.environ.get("PROCTOR_FLOWER_PASSWORD", "").strip()
if not _password:
    raise SystemExit("flower: PROCTOR_FLOWER_PASSWORD is not set; refusing to run without authentication")
if ":" in _user:
    raise SystemExit("flower: PROCTOR_FLOWER_USER must not contain ':'")

address = _os.environ.get("PROCTOR_FLOWER_ADDRESS", "").strip() or "127.0.0.1"
port = int(_os.environ.get("PROCTOR_FLOWER_PORT", "").strip() or 5555)
basic_auth = [f"{_user}:{_password}"]
url_prefix = _os.environ.get("PROCTOR_FLOWER_URL_PREFIX", "").strip().strip("/")

# The API must never be open without authentication, whatever the environment says.
_os.environ.pop("FLOWER_UNAUTHENTICATED_API", None)
