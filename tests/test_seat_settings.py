"""The seats' settings as the original server shipped them: its config.json loaded by the operator
command, served back by ``GET /api/config`` with every seat setting (known or not) and nothing of
the server's own; bad values refused with nothing changed."""
from __future__ import annotations

import json

import pytest

from tests.helpers import error_code, run_cli

SECRET = "hunter2-not-for-seats"

# The original server's config.json, as an exam office has it: seat settings, the server's own
# keys, and settings this server does not know (one of them hiding a secret).
ORIGINAL = {
    "mysql": {"host": "10.0.0.5", "port": 3306, "user": "exam", "password": SECRET, "database": "exam"},
    "data_dir": "D:/exam_server/data",
    "backup_data_dir": "E:/exam_backup",
    "server_url": "http://192.168.10.2:5000",
    "allowed_apps": [{"exe": "notepad.exe", "name": "记事本"}],
    "allowed_executables": [{"path": "C:/Windows/System32/calc.exe", "name": "Calculator"}, "mspaint.exe"],
    "allowed_urls": ["https://exam.example.edu/"],
    "allowed_url_patterns": [r"^https://exam\.example\.edu/.*$"],
    "default_url": "https://exam.example.edu/",
    "exam_time_limit": 90,
    "chrome_settings": {"disable_extensions": True, "disable_dev_tools": True, "disable_downloads": False,
                        "disable_printing": False, "disable_new_tabs": True, "kiosk_mode": "fullscreen"},
    "enable_server_reporting": True,
    "screenshot_on_violation": True,
    "end_violation_foreground_process": True,
    "show_violation_warning": True,
    "enable_screen_recording": True,
    "enable_screenshot_upload": False,
    "screen_recording": {
        "recording": {"enabled": True, "fps": 2, "quality": 80, "bitrate": 200000, "interval": 60,
                      "codec": "mp4", "scale_ratio": 0.5},
        "upload": {"strategy": "distributed", "interval": 60, "max_delay": 60, "batch_size": 5,
                   "retry_count": 3, "timeout": 60, "parallel": 2},
    },
    "hall_notice": {"text": "Hall 3: phones off", "colors": ["red", None, 3],
                    "smtp": {"host": "mail", "smtp_password": SECRET}},
    "mirror": "ftp://exam:" + SECRET + "@10.0.0.6/recordings",
}
DROPPED = ["mysql", "data_dir", "backup_data_dir", "hall_notice.smtp.smtp_password", "mirror"]


def served(api) -> dict:
    """What a seat reads from ``GET /api/config`` (the seats send no credentials)."""
    r = api.get("/api/config")
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    return r.json()["config"]


@pytest.fixture
def seat_config(api):
    """The seat settings go back to the defaults afterwards: other tests read them."""
    yield
    assert api.put("/api/admin/seat-config", "teacher", json={}).status_code == 200


def test_original_config_round_trip(api, seat_config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ORIGINAL, ensure_ascii=False, indent=4), encoding="utf-8-sig")

    done = run_cli("seat-config", "import", str(path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["dropped"]) == sorted(DROPPED)
    assert sorted(report["unknown_kept"]) == ["hall_notice"]
    assert "mysql" not in report["kept"] and "server_url" in report["kept"]

    # Every seat setting comes back as the file had it, unknown ones included; nothing else.
    expected = {k: v for k, v in ORIGINAL.items() if k not in {"mysql", "data_dir", "backup_data_dir", "mirror"}}
    expected["hall_notice"] = {"text": "Hall 3: phones off", "colors": ["red", None, 3], "smtp": {"host": "mail"}}
    config = served(api)
    assert config == expected
    text = api.get("/api/config").text
    for leak in (SECRET, "mysql", "data_dir", "password"):
        assert leak not in text

    show = run_cli("seat-config", "show")
    assert show.returncode == 0 and json.loads(show.stdout) == config
    assert api.get("/api/admin/seat-config", "teacher").json() == config


def test_cli_refuses_what_is_no_configuration(api, tmp_path):
    before = served(api)
    for name, content in [("list.json", "[1, 2]"), ("broken.json", "{\"fps\": "),
                          ("bad.json", json.dumps({"screen_recording": {"recording": {"codec": "avi"}}}))]:
        (tmp_path / name).write_text(content)
        done = run_cli("seat-config", "import", str(tmp_path / name))
        assert done.returncode == 1 and done.stderr.startswith("error:"), (name, done.stderr)
    assert run_cli("seat-config", "import", str(tmp_path / "missing.json")).returncode == 1
    assert run_cli("seat-config").returncode == 2
    assert served(api) == before


def test_defaults_are_the_shipped_ones(api, seat_config):
    assert api.put("/api/admin/seat-config", "teacher", json={}).status_code == 200
    config = served(api)
    assert config["chrome_settings"] == {"disable_extensions": True, "disable_dev_tools": True,
                                         "disable_downloads": False, "disable_printing": False,
                                         "disable_new_tabs": False}
    assert config["screen_recording"]["upload"] == {"strategy": "distributed", "interval": 60, "max_delay": 60,
                                                    "batch_size": 5, "retry_count": 3, "timeout": 60}
    assert config["screen_recording"]["recording"] == {"enabled": True, "fps": 2, "quality": 80, "bitrate": 200000,
                                                       "interval": 60, "codec": "mp4", "scale_ratio": 0.5}
    assert (config["exam_time_limit"], config["enable_screenshot_upload"], config["show_violation_warning"],
            config["end_violation_foreground_process"]) == (120, False, False, False)
    assert "server_url" not in config  # served only once the office set one


def test_teacher_edit_keeps_unknown_settings(api, seat_config):
    new = {"allowed_executables": ["notepad.exe", {"path": "C:/x.exe", "name": "X", "sha1": "abc"}],
           "chrome_settings": {"kiosk_mode": "fullscreen"}, "hall_notice": {"text": "Hall 3"}}
    r = api.put("/api/admin/seat-config", "teacher", json=new)
    assert r.status_code == 200, r.text
    config = served(api)
    assert config["allowed_executables"] == new["allowed_executables"]
    assert config["chrome_settings"]["kiosk_mode"] == "fullscreen"
    assert config["chrome_settings"]["disable_dev_tools"] is True  # the rest takes the defaults
    assert config["hall_notice"] == {"text": "Hall 3"} and r.json() == config


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    "body,status",
    [
        ({"allowed_url_patterns": ["(unclosed"]}, 400),
        ({"screen_recording": {"recording": {"codec": "avi"}}}, 400),
        ({"screen_recording": {"upload": {"batch_size": 0}}}, 400),
        ({"exam_time_limit": "long"}, 400),
        ({"server_url": "not a url"}, 400),
        ({"allowed_executables": [{"path": "", "name": "nothing"}]}, 400),
        ({"mysql": {"host": "db"}}, 400),  # the server's own keys are never seat settings
        ({"data_dir": "/srv"}, 400),
        ({"hall_notice": {"api_token": "t"}}, 400),  # nor anything that looks like a secret
        ({"mirror": "ftp://user:pw@host/x"}, 400),
        ({"deep": nested(40)}, 400),
        ("[" * 50_000, 400),  # deeper than the JSON parser goes
        ('{"hall_notice": {"ratio": NaN}}', 400),  # Python reads it; no JSON database or seat does
        ({"hall_notice": "x" * 1_100_000}, 413),
        ([1, 2], 400),
    ],
)
def test_bad_values_are_refused_and_change_nothing(api, seat_config, body, status):
    api.put("/api/admin/seat-config", "teacher", json={"exam_time_limit": 45, "hall_notice": {"text": "kept"}})
    before = served(api)
    if isinstance(body, str):
        r = api.put("/api/admin/seat-config", "teacher", data=body, headers={"Content-Type": "application/json"})
    else:
        r = api.put("/api/admin/seat-config", "teacher", json=body)
    assert r.status_code == status, r.text
    error_code(r)
    assert served(api) == before
    assert SECRET not in r.text
