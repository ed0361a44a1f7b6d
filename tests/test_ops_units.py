"""Operations: the scripts in scripts/, gunicorn_config.py, Flower's settings and the systemd units.

- every script parses (bash -n), has ``set -euo pipefail`` and a usage line that ``-h`` prints;
- shellcheck is clean (skipped when shellcheck is not installed);
- scripts/lib.sh starts, recognises and stops daemons (pid files, readiness, escalation to SIGKILL,
  no stray processes) - with stand-in processes, no Redis needed;
- the start/stop scripts bring up and take down the real web app, Beat, both workers and Flower
  (needs the Redis the rest of the suite uses; a database number of its own);
- scripts/install_systemd.sh --root writes the env file with generated secrets and the units, and
  never overwrites the env file;
- ``systemd-analyze verify`` accepts every unit (skipped when systemd-analyze is missing).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SYSTEMD = ROOT / "systemd"
LIB = SCRIPTS / "lib.sh"
BIN = Path(sys.executable).parent
UNITS = [
    "proctor.target",
    "proctor-web.service",
    "proctor-beat.service",
    "proctor-worker-status.service",
    "proctor-worker-merge.service",
    "proctor-flower.service",
]
# Scripts that are sourced by others rather than run.
SOURCED = {"lib.sh", "bootstrap.sh"}


def all_scripts() -> list[Path]:
    return sorted(SCRIPTS.glob("*.sh"))


def runnable_scripts() -> list[Path]:
    return [p for p in all_scripts() if p.name not in SOURCED]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ops_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for running the scripts against temporary directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROCTOR_", "FLOWER_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "PROCTOR_RUN_DIR": str(tmp_path / "run"),
            "PROCTOR_LOG_DIR": str(tmp_path / "logs"),
            "PROCTOR_DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'proctor.db'}",
            "PROCTOR_START_TIMEOUT_S": "60",
            "PROCTOR_STOP_TIMEOUT_S": "30",
        }
    )
    env.update(extra)
    return env


def run(args, env=None, timeout=120, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(stat_file.parent.name))
    return members


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- static checks of the scripts ----------------------------------------------------------------


@pytest.mark.parametrize("script", all_scripts(), ids=lambda p: p.name)
def test_script_parses(script):
    result = run(["bash", "-n", script])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", runnable_scripts() + [LIB], ids=lambda p: p.name)
def test_script_is_strict_and_documents_usage(script):
    text = script.read_text()
    assert re.search(r"^set -euo pipefail$", text, re.M), f"{script.name} lacks set -euo pipefail"
    assert re.search(r"usage:", text, re.I), f"{script.name} has no usage line"


@pytest.mark.parametrize("script", runnable_scripts(), ids=lambda p: p.name)
def test_dash_h_prints_usage(script, tmp_path):
    # From another directory: the scripts find the repository themselves.
    result = run(["bash", script, "-h"], env=ops_env(tmp_path), cwd=tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.search(r"usage:", result.stdout, re.I), result.stdout
    assert not (tmp_path / "run").exists(), "-h must not do anything"


@pytest.mark.parametrize(
    "script", [p for p in runnable_scripts() if p.name != "test.sh"], ids=lambda p: p.name
)
def test_unknown_argument_is_refused(script, tmp_path):
    result = run(["bash", script, "--no-such-option"], env=ops_env(tmp_path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert re.search(r"usage:", result.stderr, re.I)


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = run([shellcheck, "-x", "-s", "bash", *[p.relative_to(ROOT) for p in all_scripts()]], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_env_var_of_the_issue_is_documented_where_it_is_read():
    """Each variable appears in the header comment of a script (or config) that reads it."""
    documented = {
        "PROCTOR_BIND": ["start_web.sh"],
        "PROCTOR_WEB_WORKERS": ["start_web.sh"],
        "PROCTOR_WEB_THREADS": ["start_web.sh"],
        "PROCTOR_WEB_WORKER_CLASS": ["start_web.sh"],
        "PROCTOR_WEB_CONNECTIONS": ["start_web.sh"],
        "PROCTOR_WEB_READ_TIMEOUT_S": ["start_web.sh"],
        "PROCTOR_WEB_MIN_BODY_RATE": ["start_web.sh"],
        "PROCTOR_MERGE_CONCURRENCY": ["start_celery_worker.sh"],
        "PROCTOR_FLOWER_ADDRESS": ["start_flower.sh", "flowerconfig.py"],
        "PROCTOR_FLOWER_PORT": ["start_flower.sh", "flowerconfig.py"],
        "PROCTOR_FLOWER_USER": ["start_flower.sh", "flowerconfig.py"],
        "PROCTOR_FLOWER_PASSWORD": ["start_flower.sh", "flowerconfig.py"],
        "PROCTOR_FLOWER_URL_PREFIX": ["start_flower.sh", "flowerconfig.py"],
        "PROCTOR_RUN_DIR": ["lib.sh"],
        "PROCTOR_LOG_DIR": ["lib.sh"],
        "PROCTOR_DATA_DIR": ["lib.sh"],
        "PROCTOR_STOP_TIMEOUT_S": ["lib.sh", "stop_celery.sh", "stop.sh"],
        "PROCTOR_START_TIMEOUT_S": ["lib.sh"],
        "PROCTOR_REDIS_PORT": ["start.sh"],
        "REDIS_URL": ["lib.sh", "start.sh"],
        "DATABASE_URL": ["start.sh"],
    }
    for var, files in documented.items():
        for name in files:
            header = "".join(
                line for line in (SCRIPTS / name).read_text().splitlines(keepends=True)[:60]
                if line.startswith("#") or line.startswith("  ")
            )
            assert var in header, f"{var} is not documented at the top of scripts/{name}"


# --- scripts/lib.sh with stand-in daemons --------------------------------------------------------


class Lib:
    """Calls functions of scripts/lib.sh in a fresh bash, with temporary run/log/data dirs."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.env = ops_env(tmp_path, PROCTOR_START_TIMEOUT_S="5", PROCTOR_STOP_TIMEOUT_S="1")
        self.harness = tmp_path / "harness.sh"
        self.harness.write_text('set -euo pipefail\nsource "$1"\nshift\n"$@"\n')
        self.marker = f"proctor-ops-test-{os.getpid()}-{tmp_path.name}"
        self.started: list[int] = []

    def __call__(self, *args, env=None, timeout=60) -> subprocess.CompletedProcess:
        return run(["bash", self.harness, LIB, *args], env={**self.env, **(env or {})}, timeout=timeout)

    def start(self, script: str, ready: tuple = ("true",), env=None) -> subprocess.CompletedProcess:
        log = self.tmp / "logs" / "fake.log"
        result = self(
            "start_daemon", "fake", self.marker, log, *ready, "--", "bash", "-c", script, self.marker, env=env
        )
        pid = self.pid()
        if pid:
            self.started.append(pid)
        return result

    def pid(self) -> int | None:
        try:
            return int((self.tmp / "run" / "fake.pid").read_text())
        except FileNotFoundError:
            return None

    def stop(self, mode: str = "") -> subprocess.CompletedProcess:
        return self("stop_daemons", f"fake:{self.marker}{':' + mode if mode else ''}")

    def cleanup(self) -> None:
        for pid in self.started:
            kill_group(pid)


@pytest.fixture
def lib(tmp_path):
    helper = Lib(tmp_path)
    yield helper
    helper.cleanup()


# A daemon that ignores SIGTERM and has a child in its process group.
STUBBORN = 'trap "" TERM; sleep 300 & wait'


def test_start_daemon_records_pid_and_is_idempotent(lib):
    first = lib.start("sleep 300 & wait")
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    pid = lib.pid()
    assert pid and pid_alive(pid)
    # The recorded pid is the daemon itself, leader of its own process group (setsid).
    assert os.getpgid(pid) == pid
    assert lib.marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")

    again = lib.start("sleep 300 & wait")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert lib.pid() == pid

    stopped = lib.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_alive(pid)
    assert group_members(pid) == []
    assert lib.pid() is None


def test_stop_kills_what_ignores_sigterm_and_leaves_no_strays(lib):
    assert lib.start(STUBBORN).returncode == 0
    pid = lib.pid()
    assert wait_for_value(lambda: len(group_members(pid)) == 2, 10)  # bash and its sleep
    result = lib.stop()  # a hang would run into the subprocess timeout
    assert result.returncode == 0, result.stderr
    assert "killing its process group" in result.stderr
    assert group_members(pid) == []
    assert lib.pid() is None


def test_cold_mode_sends_sigquit_before_sigkill(lib):
    script = 'trap "" TERM; sleep 300 & child=$!; trap "kill -KILL $child; exit 0" QUIT; while :; do wait || :; done'
    assert lib.start(script).returncode == 0
    pid = lib.pid()
    result = lib.stop(mode="cold")
    assert result.returncode == 0, result.stderr
    assert "cold shutdown" in result.stderr
    assert "killing" not in result.stderr, "SIGQUIT alone should have stopped it"
    assert group_members(pid) == []


def test_start_fails_clearly_when_the_process_exits(lib):
    # Never ready: with an instant check a loaded machine could call the daemon ready before it
    # had time to exit.
    result = lib.start("echo boom-from-daemon; exit 3", ready=("false",), env={"PROCTOR_START_TIMEOUT_S": "60"})
    assert result.returncode == 1
    assert "exited while starting" in result.stderr
    assert "boom-from-daemon" in result.stderr  # the end of its log is shown
    assert lib.pid() is None


def test_start_fails_and_cleans_up_when_never_ready(lib):
    result = lib.start("sleep 300 & wait", ready=("false",), env={"PROCTOR_START_TIMEOUT_S": "1"})
    assert result.returncode == 1
    assert "did not answer within 1s" in result.stderr
    assert lib.pid() is None
    for pid in lib.started:
        assert group_members(pid) == []


def test_stale_pid_file_is_not_mistaken_for_a_running_daemon(lib):
    (lib.tmp / "run").mkdir(parents=True)
    # A live process that is not ours: this test process.
    (lib.tmp / "run" / "fake.pid").write_text(f"{os.getpid()}\n")
    result = lib.start("sleep 300 & wait")
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
    assert lib.pid() != os.getpid()
    assert lib.stop().returncode == 0
    assert pid_alive(os.getpid())


def test_stop_of_nothing_succeeds(lib):
    result = lib.stop()
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout


def test_wait_for_polls_until_true(lib, tmp_path):
    flag = tmp_path / "flag"
    # The condition becomes true after about a second; wait_for must poll rather than give up.
    subprocess.Popen(["bash", "-c", f"sleep 1; touch {flag}"])
    result = lib("wait_for", "10", "-", "test", "-e", flag)
    assert result.returncode == 0
    timeout = lib("wait_for", "1", "-", "false")
    assert timeout.returncode == 1


# --- gunicorn_config.py and Flower's settings ----------------------------------------------------


def load_module_globals(path: Path, env: dict[str, str]) -> dict:
    code = (
        "import json, runpy, sys\n"
        "g = runpy.run_path(sys.argv[1])\n"
        "print(json.dumps({k: (v if isinstance(v, (str, int, float, bool, list, type(None))) else repr(v))"
        " for k, v in g.items() if not k.startswith('__')}))\n"
    )
    result = run([sys.executable, "-c", code, path], env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gunicorn_config_defaults(tmp_path):
    env = ops_env(tmp_path)
    for name in ("PROCTOR_LOG_DIR", "PROCTOR_RUN_DIR"):
        env.pop(name)
    g = load_module_globals(ROOT / "gunicorn_config.py", env)
    assert g["bind"] == ["127.0.0.1:8000"]
    assert g["workers"] == 2 and g["threads"] == 8 and g["worker_class"] == "proctor.serving.PacedGeventWorker"
    assert g["worker_connections"] == 1000 and g["logger_class"] == "proctor.serving.EscapingLogger"
    assert g["timeout"] == 300 and g["graceful_timeout"] == 120
    assert g["max_requests"] == 100000 and g["max_requests_jitter"] == 10000
    assert g["keepalive"] >= 2
    assert g["reload"] is False and g["preload_app"] is False
    assert g["accesslog"] == str(ROOT / "logs" / "gunicorn_access.log")
    assert g["errorlog"] == str(ROOT / "logs" / "gunicorn_error.log")
    # No merge machinery in hooks; child_exit only in Prometheus multiprocess mode.
    for hook in ("post_fork", "worker_exit", "child_exit", "post_worker_init"):
        assert hook not in g


def test_gunicorn_config_from_environment(tmp_path):
    prom = tmp_path / "prom"
    env = ops_env(
        tmp_path,
        PROCTOR_BIND="0.0.0.0:9000, unix:/tmp/x.sock",
        PROCTOR_WEB_WORKERS="5",
        PROCTOR_WEB_THREADS="3",
        PROCTOR_WEB_WORKER_CLASS="gthread",
        PROCTOR_WEB_CONNECTIONS="300",
        PROMETHEUS_MULTIPROC_DIR=str(prom),
    )
    g = load_module_globals(ROOT / "gunicorn_config.py", env)
    assert g["bind"] == ["0.0.0.0:9000", "unix:/tmp/x.sock"]
    assert (g["workers"], g["threads"], g["worker_class"], g["worker_connections"]) == (5, 3, "gthread", 300)
    assert g["accesslog"] == str(tmp_path / "logs" / "gunicorn_access.log")
    assert g["control_socket"] == str(tmp_path / "run" / "gunicorn.ctl")
    assert "child_exit" in g
    assert prom.is_dir()


def worker_bounds(env: dict[str, str]) -> list:
    """The read timeout and minimum body rate the paced worker gets from gunicorn_config.py."""
    code = (
        "import json, runpy, sys\n"
        "runpy.run_path(sys.argv[1])\n"
        "from proctor.serving import PacedGeventWorker as W\n"
        "print(json.dumps([W.read_timeout_s, W.min_body_rate]))\n"
    )
    result = run([sys.executable, "-c", code, ROOT / "gunicorn_config.py"], env=env, cwd=ROOT, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gunicorn_config_bounds_slow_clients(tmp_path):
    assert worker_bounds(ops_env(tmp_path)) == [30, 1024]
    env = ops_env(tmp_path, PROCTOR_WEB_READ_TIMEOUT_S="7", PROCTOR_WEB_MIN_BODY_RATE="0")
    assert worker_bounds(env) == [7, 0]


@pytest.mark.parametrize("name", ["PROCTOR_WEB_WORKERS", "PROCTOR_WEB_CONNECTIONS", "PROCTOR_WEB_READ_TIMEOUT_S",
                                  "PROCTOR_WEB_MIN_BODY_RATE"])
def test_gunicorn_config_rejects_bad_numbers(tmp_path, name):
    env = ops_env(tmp_path, **{name: "many"})
    result = run([sys.executable, ROOT / "gunicorn_config.py"], env=env, cwd=ROOT, timeout=30)
    assert result.returncode != 0
    assert name in result.stderr


def test_gunicorn_accepts_the_config(tmp_path):
    env = ops_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
    result = run([BIN / "gunicorn", "-c", ROOT / "gunicorn_config.py", "--print-config", "server:app"],
                 env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^worker_class\s+= proctor\.serving\.PacedGeventWorker$", result.stdout, re.M)
    assert re.search(r"^logger_class\s+= proctor\.serving\.EscapingLogger$", result.stdout, re.M)
    assert re.search(r"^child_exit\s+= .*child_exit", result.stdout, re.M)


def test_flower_settings_need_a_password_and_default_to_loopback(tmp_path):
    conf = SCRIPTS / "flowerconfig.py"
    env = ops_env(tmp_path, PROCTOR_FLOWER_PASSWORD="s3cret:with-colon", FLOWER_UNAUTHENTICATED_API="1")
    g = load_module_globals(conf, env)
    assert g["address"] == "127.0.0.1" and g["port"] == 5555
    assert g["basic_auth"] == ["admin:s3cret:with-colon"]
    assert g["url_prefix"] == ""

    g = load_module_globals(conf, ops_env(tmp_path, PROCTOR_FLOWER_PASSWORD="p", PROCTOR_FLOWER_URL_PREFIX="/flower/",
                                          PROCTOR_FLOWER_USER="ops", PROCTOR_FLOWER_PORT="6000"))
    assert g["url_prefix"] == "flower" and g["port"] == 6000 and g["basic_auth"] == ["ops:p"]

    result = run([sys.executable, conf], env=ops_env(tmp_path), timeout=30)
    assert result.returncode != 0
    assert "PROCTOR_FLOWER_PASSWORD" in result.stderr


# --- the real services, started and stopped by the scripts ---------------------------------------


def ops_redis_url() -> str:
    """The suite's Redis server, but a database of our own (13), so Beat's tasks meet nobody else's."""
    base = os.environ.get("TEST_OPS_REDIS_URL") or os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    if os.environ.get("TEST_OPS_REDIS_URL"):
        return base
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/13", parts.query, parts.fragment))


@pytest.fixture
def ops_redis():
    import redis

    url = ops_redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.skip(f"no Redis at {url}: {err}")
    client.flushdb()
    yield url
    client.flushdb()


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    import requests

    return requests.get(url, auth=auth, timeout=5).status_code


def test_scripts_start_and_stop_the_whole_stack(tmp_path, ops_redis):
    """The stack as an operator runs it: started by the scripts, an exam end to end over HTTP,
    Flower and /stats reading it, and stop scripts that leave nothing behind."""
    import requests

    from tests.media_helpers import make_clip

    web_port, flower_port = free_port(), free_port()
    env = ops_env(
        tmp_path,
        REDIS_URL=ops_redis,
        PROCTOR_BIND=f"127.0.0.1:{web_port}",
        PROCTOR_FLOWER_PORT=str(flower_port),
        PROCTOR_ADMIN_TOKEN="ops-admin-token",
        PROCTOR_MERGE_GRACE_S="2",
    )
    run_dir = tmp_path / "run"
    names = ["web", "celery_beat", "celery_worker_status", "celery_worker_merge", "flower"]
    base, flower = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{flower_port}"
    teacher = {"Authorization": "Bearer ops-admin-token"}

    def pids() -> dict[str, int]:
        return {n: int((run_dir / f"{n}.pid").read_text()) for n in names if (run_dir / f"{n}.pid").exists()}

    def log(name: str) -> str:
        path = tmp_path / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def finished_session(student: str) -> dict:
        exam = requests.post(f"{base}/api/exams", headers=teacher, timeout=10, json={
            "title": "ops", "starts_at": "2020-01-01T00:00:00+00:00", "ends_at": "2099-01-01T00:00:00+00:00"}).json()
        s = requests.post(f"{base}/api/exams/{exam['id']}/join", timeout=10,
                          json={"student_id": student, "entry_code": exam["entry_code"]}).json()
        auth = {"Authorization": f"Bearer {s['token']}"}
        for seq in range(2):
            clip = make_clip(tmp_path / f"{student}{seq}.mp4", seconds=1.0).read_bytes()
            r = requests.put(f"{base}/api/sessions/{s['session_id']}/segments/{seq}", data=clip, timeout=10,
                             headers={**auth, "Content-Type": "video/mp4"})
            assert r.status_code == 201, r.text
        assert requests.post(f"{base}/api/sessions/{s['session_id']}/finish", headers=auth, json={},
                             timeout=10).status_code == 202
        return s

    def state(s: dict) -> str:
        return requests.get(f"{base}/api/sessions/{s['session_id']}", headers=teacher, timeout=10).json()["state"]

    try:
        assert run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, cwd=ROOT).returncode == 0
        for script in ("start_web.sh", "start_all_celery.sh", "start_flower.sh"):
            result = run(["bash", SCRIPTS / script], env=env, cwd=tmp_path, timeout=300)
            assert result.returncode == 0, f"{script}:\n{result.stdout}\n{result.stderr}"
        started = pids()
        assert set(started) == set(names)
        assert all(pid_alive(p) for p in started.values())

        # Each answers.
        assert http_status(f"{base}/health") == 200
        password = (tmp_path / "var" / "flower_password").read_text().strip()
        assert stat.S_IMODE((tmp_path / "var" / "flower_password").stat().st_mode) == 0o600
        assert http_status(f"{flower}/") == 401
        assert http_status(f"{flower}/api/workers") == 401
        assert http_status(f"{flower}/", auth=("admin", password)) == 200

        # Flower lists both workers with the design's concurrency.
        def flower_workers():
            workers = requests.get(f"{flower}/api/workers?refresh=1", auth=("admin", password), timeout=15).json()
            return {name.split("@")[0]: w["stats"]["pool"]["max-concurrency"] for name, w in workers.items()
                    if w.get("stats")}

        assert wait_for_value(lambda: flower_workers() == {"status": 1, "merge": 2}, 60)

        # An exam end to end through the script-started workers.
        s = finished_session("alice")
        assert wait_for_value(lambda: state(s) == "merged", 120), state(s)

        # Beat fires the status check and the named log files fill.
        assert wait_for_value(lambda: "status_check_task" in log("celery_worker_status.log"), 60)
        assert "beat: Starting" in log("celery_beat.log")
        assert "merge_videos_task" in log("celery_worker_merge.log")
        assert requests.get(f"{base}/api/exams?token=leaky-secret", timeout=10).status_code == 401
        assert wait_for_value(lambda: "GET /api/exams HTTP" in log("gunicorn_access.log"), 10)
        access = log("gunicorn_access.log")
        assert "POST /api/exams" in access and re.search(r"rid=[0-9a-f]{32}", access)
        assert "ops-admin-token" not in access and "leaky-secret" not in access
        for name in ("gunicorn_error.log", "flower.log"):
            assert (tmp_path / "logs" / name).exists(), name
        worker = Path(f"/proc/{started['celery_worker_merge']}/cmdline").read_bytes().split(b"\0")
        assert b"video_merge" in worker and b"--concurrency" in worker
        assert worker[worker.index(b"--concurrency") + 1] == b"2"

        # Starting again changes nothing and says so.
        again = run(["bash", SCRIPTS / "start_all_celery.sh"], env=env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 3
        assert pids() == started

        # With the merge worker stopped, /stats shows the backlog; restarted, it drains.
        result = run(["bash", SCRIPTS / "stop_celery.sh", "merge"], env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert group_members(started["celery_worker_merge"]) == []
        assert pid_alive(started["celery_worker_status"])
        waiting = finished_session("bob")
        stats = requests.get(f"{base}/stats", headers=teacher, timeout=15).json()
        assert stats["queues"]["video_merge"] >= 1, stats
        assert not any(w.startswith("merge@") for w in stats["workers"]), stats
        assert requests.get(f"{base}/stats", timeout=10).status_code == 401
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'proctor_queue_depth{queue="video_merge"}' in metrics
        assert "proctor_upload_bytes_total" in metrics
        assert 'proctor_recordings{status="merged"} 1.0' in metrics
        # Counted by the merge worker, shown by the web app: they share the multiprocess directory.
        assert 'proctor_merges_total{outcome="merged"} 1.0' in metrics
        assert "proctor_merge_duration_seconds_count 1.0" in metrics
        # Flower counts the workers' events in metrics of its own, served by Flower alone: none of
        # them may reach the web app's /metrics through that directory.
        def flower_metrics() -> str:
            return requests.get(f"{flower}/metrics", auth=("admin", password), timeout=15).text

        assert wait_for_value(lambda: "flower_events_total{" in flower_metrics(), 60)
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert "proctor_upload_bytes_total" in metrics
        assert not re.findall(r"^flower_\w*", metrics, re.M), "Flower's metrics leak into /metrics"
        result = run(["bash", SCRIPTS / "start_celery_worker.sh"], env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert wait_for_value(lambda: state(waiting) == "merged", 120), state(waiting)
        started = pids()

        result = run(["bash", SCRIPTS / "stop.sh"], env=env, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        for name, pid in started.items():
            assert group_members(pid) == [], f"{name} left processes behind"
        assert pids() == {}
    finally:
        for pid in pids().values():
            kill_group(pid)


def wait_for_value(condition, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: BLE001 - the service may still be coming up
            pass
        time.sleep(interval)
    return False


def test_start_web_fails_clearly_when_the_port_is_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = ops_env(tmp_path, PROCTOR_BIND=f"127.0.0.1:{port}", PROCTOR_START_TIMEOUT_S="20")
        result = run(["bash", SCRIPTS / "start_web.sh"], env=env, timeout=120)
    assert result.returncode != 0
    assert "web" in result.stderr and "error" in result.stderr
    assert not (tmp_path / "run" / "web.pid").exists()


# --- scripts/start.sh when something goes wrong ---------------------------------------------------


def venv_is_current() -> bool:
    """start.sh (re)builds .venv when it does not match requirements.txt: never under a test run."""
    stamp = ROOT / ".venv" / "requirements.sha256"
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    return stamp.is_file() and stamp.read_text().strip() == want


def start_sh_env(tmp_path: Path, redis_port: int) -> dict[str, str]:
    """start.sh with its own Redis on ``redis_port`` and a database that cannot be created (a
    SQLite file below a regular file), so that it fails at the migrations, after starting Redis."""
    if not venv_is_current():
        pytest.skip("scripts/start.sh would build .venv first (it does not match requirements.txt)")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    (tmp_path / "not-a-directory").write_text("")
    env = ops_env(
        tmp_path,
        PROCTOR_REDIS_PORT=str(redis_port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'not-a-directory' / 'proctor.db'}",
    )
    env.pop("REDIS_URL", None)  # start.sh starts a Redis of its own only when none is given
    return env


def redis_servers_in(directory: Path) -> list[int]:
    """Live redis-server processes whose data directory (their working directory) is ``directory``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd") == str(directory.resolve()) and b"redis-server" in (proc / "cmdline").read_bytes():
                if pid_alive(int(proc.name)):
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_failed_start_stops_the_redis_it_started(tmp_path):
    """A start that fails half-way leaves nothing running: a Redis left behind would be adopted by
    the next start and by the other scripts (run/redis_url)."""
    env = start_sh_env(tmp_path, free_port())
    redis_dir = tmp_path / "var" / "redis"
    try:
        result = run(["bash", SCRIPTS / "start.sh"], env=env, cwd=tmp_path, timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "redis started" in result.stdout
        assert "database migrations failed" in result.stderr
        assert wait_for_value(lambda: redis_servers_in(redis_dir) == [], 30), "its Redis is still running"
        assert not (tmp_path / "run" / "redis.pid").exists()
        assert not (tmp_path / "run" / "redis_url").exists()
        assert "stopping what this run started" in result.stderr
    finally:
        for pid in redis_servers_in(redis_dir):
            kill_group(os.getpgid(pid))


def test_start_refuses_a_running_redis_that_keeps_its_data_elsewhere(tmp_path):
    """The Redis recorded in run/redis.pid is adopted only when its data directory is the one this
    start would give it; it is not stopped either, as this start did not start it."""
    port = free_port()
    env = start_sh_env(tmp_path, port)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lib = Lib(tmp_path)
    try:
        # Started as start.sh starts its own, but with its data in another directory.
        started = lib(
            "start_daemon", "redis", "redis-server", tmp_path / "logs" / "redis.log",
            "tcp_redis_ping", "127.0.0.1", port, "--",
            "redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", elsewhere,
            "--appendonly", "no", "--save", "", "--daemonize", "no", "--logfile", "",
        )
        assert started.returncode == 0, started.stderr
        pid = int((tmp_path / "run" / "redis.pid").read_text())

        result = run(["bash", SCRIPTS / "start.sh"], env=env, cwd=tmp_path, timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"keeps its data in {elsewhere.resolve()}" in result.stderr, result.stderr
        assert str((tmp_path / "var" / "redis").resolve()) in result.stderr
        assert "database migrations" not in result.stdout, "it must stop before using that Redis"
        assert pid_alive(pid) and redis_servers_in(elsewhere) == [pid]
    finally:
        for pid in redis_servers_in(elsewhere):
            kill_group(os.getpgid(pid))


# --- systemd -------------------------------------------------------------------------------------


def install(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(["bash", SCRIPTS / "install_systemd.sh", "--root", tmp_path / "root", *extra],
               env=ops_env(tmp_path), cwd=tmp_path, timeout=120)


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def test_install_systemd_writes_env_file_and_units(tmp_path):
    result = install(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    root = tmp_path / "root"
    env_file = root / "etc/proctor/proctor.env"
    values = env_values(env_file)
    token, password = values["PROCTOR_ADMIN_TOKEN"], values["PROCTOR_FLOWER_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", token)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", password)
    assert token != password
    assert values["PROCTOR_DATA_DIR"] == "/var/lib/proctor"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    # Every documented setting of the template survives.
    assert env_values(SYSTEMD / "proctor.env.example").keys() == values.keys()

    unit_dir = root / "etc/systemd/system"
    for unit in UNITS:
        text = (unit_dir / unit).read_text()
        assert "/opt/proctor" not in text
        if unit.endswith(".service"):
            assert f"WorkingDirectory={ROOT}\n" in text
            assert "EnvironmentFile=/etc/proctor/proctor.env" in text
            assert "User=proctor" in text
            assert re.search(rf"^ExecStart={re.escape(str(ROOT))}/\.venv/bin/(gunicorn|celery) ", text, re.M)
            assert "ReadWritePaths=/var/lib/proctor /var/log/proctor" in text
            for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                            "Restart=on-failure", "PartOf=proctor.target", "WantedBy=proctor.target"):
                assert setting in text, f"{unit}: {setting}"
    assert (root / "var/lib/proctor").is_dir() and (root / "var/log/proctor").is_dir()
    if shutil.which("systemctl"):
        wants = unit_dir / "proctor.target.wants"
        assert sorted(p.name for p in wants.iterdir()) == sorted(u for u in UNITS if u.endswith(".service"))
        assert (unit_dir / "multi-user.target.wants" / "proctor.target").is_symlink()

    # Running it again keeps the env file and its secrets.
    env_file.write_text(env_file.read_text() + "# local change\n")
    again = install(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "keeping the existing" in again.stdout
    assert env_file.read_text().endswith("# local change\n")
    assert env_values(env_file)["PROCTOR_ADMIN_TOKEN"] == token


def test_install_systemd_custom_directories_and_dry_run(tmp_path):
    result = install(tmp_path, "--dry-run", "--data-dir", "/srv/proctor-data")
    assert result.returncode == 0, result.stderr
    assert "[dry-run]" in result.stdout
    assert not (tmp_path / "root").exists()

    result = install(tmp_path, "--data-dir", "/srv/proctor-data", "--log-dir", "/srv/proctor-logs")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    assert env_values(root / "etc/proctor/proctor.env")["PROCTOR_DATA_DIR"] == "/srv/proctor-data"
    web = (root / "etc/systemd/system/proctor-web.service").read_text()
    assert "ReadWritePaths=/srv/proctor-data /srv/proctor-logs" in web
    assert "PROCTOR_DATA_DIR=/srv/proctor-data PROCTOR_LOG_DIR=/srv/proctor-logs" in web

    # An existing env file wins; a contradicting option is refused rather than half-applied.
    refused = install(tmp_path, "--data-dir", "/srv/elsewhere")
    assert refused.returncode == 1
    assert "differs" in refused.stderr


def test_install_systemd_refuses_bad_paths(tmp_path):
    result = install(tmp_path, "--data-dir", "relative/dir")
    assert result.returncode == 1
    assert "absolute path" in result.stderr


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def verify(unit_files: list[Path]) -> tuple[int, list[str]]:
    """Run systemd-analyze verify; return its exit code and the lines that concern our units."""
    result = run([systemd_analyze(), "verify", *unit_files], timeout=120)
    names = {p.name for p in unit_files} | {str(p.parent) for p in unit_files}
    lines = [
        line for line in (result.stdout + result.stderr).splitlines()
        if any(name in line for name in names) or "proctor" in line
    ]
    return result.returncode, lines


def rendered_units(tmp_path: Path) -> list[Path]:
    """The units as install_systemd.sh writes them, for this checkout; ExecStart must exist."""
    result = install(tmp_path)
    assert result.returncode == 0, result.stderr
    unit_dir = tmp_path / "root/etc/systemd/system"
    files = [unit_dir / unit for unit in UNITS]
    if not (ROOT / ".venv/bin/celery").exists():  # e.g. a CI run from another virtualenv
        for path in files:
            path.write_text(path.read_text().replace(f"{ROOT}/.venv/bin/", f"{BIN}/"))
    return files


def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    systemd_analyze()
    files = rendered_units(tmp_path)
    code, lines = verify(files)
    assert code == 0 and lines == [], "\n".join(lines)


def test_systemd_analyze_verify_would_notice_a_broken_unit(tmp_path):
    """The check above is meaningful: a typo or a missing binary is reported."""
    systemd_analyze()
    files = rendered_units(tmp_path)
    beat = files[UNITS.index("proctor-beat.service")]
    beat.write_text(beat.read_text().replace("KillMode=mixed", "KillMode=mixed\nTimeoutStopSecs=30"))
    flower = files[UNITS.index("proctor-flower.service")]
    flower.write_text(re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/celery", flower.read_text()))
    code, lines = verify([beat, flower])
    assert any("TimeoutStopSecs" in line for line in lines), lines
    assert code != 0 or any("nonexistent" in line for line in lines), lines


def test_flower_runs_without_the_shared_multiprocess_directory():
    """Flower's flower_* metrics must not land where the web app's /metrics aggregates; the
    whole-stack test checks it for the scripts, this for the unit (an env file may set it)."""
    unit = (SYSTEMD / "proctor-flower.service").read_text()
    assert re.search(r"^UnsetEnvironment=.*\bPROMETHEUS_MULTIPROC_DIR\b", unit, re.M)
    assert not re.search(r"^Environment=.*PROMETHEUS_MULTIPROC_DIR", unit, re.M)


def test_units_have_the_documented_stop_behaviour():
    merge = (SYSTEMD / "proctor-worker-merge.service").read_text()
    assert "KillMode=mixed" in merge
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", merge, re.M).group(1))
    import celery_config
    assert stop > celery_config.task_time_limit, "a warm shutdown must be able to outlast a merge"
    assert "-n merge@%%h" in merge and "--queues video_merge" in merge
    status = (SYSTEMD / "proctor-worker-status.service").read_text()
    assert "-n status@%%h" in status and "--concurrency 1" in status
    web = (SYSTEMD / "proctor-web.service").read_text()
    assert "Type=notify" in web
    graceful = load_module_globals(ROOT / "gunicorn_config.py", dict(os.environ))["graceful_timeout"]
    assert int(re.search(r"^TimeoutStopSec=(\d+)", web, re.M).group(1)) > graceful
    for unit in UNITS[1:]:
        text = (SYSTEMD / unit).read_text()
        assert len(re.findall(r"^ExecStart=", text, re.M)) == 1
        assert "--detach" not in text and "celery multi" not in text
