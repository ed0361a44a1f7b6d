"""What the tests share: the suite's environment, polling, child processes (Gunicorn, Celery
workers, the operator CLI) and clients of the HTTP API.

The API clients speak over a *transport*: ``HttpTransport`` sends real HTTP to a server (Gunicorn),
``AppTransport`` goes through Flask's test client in this process. ``Api`` (the token API, as an
exam client and a teacher use it) and ``Seat`` (the desktop seats' protocol) work over either, so a
test chooses its tier by the fixture it takes (``api`` in-process, ``http_api`` over Gunicorn).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_DIR = Path(tempfile.mkdtemp(prefix="proctor-test-"))
DATA = RUN_DIR / "data"
ADMIN_TOKEN = "test-admin-token-0123456789"
MERGE_TIMEOUT_S = 120
FINAL_STATES = frozenset({"merged", "partial", "failed"})


def install_environment() -> None:
    """The suite's settings, in the environment: the child processes (Gunicorn, Celery, the CLI)
    read them from there, and so does this process's ``proctor.config.settings()``.

    The database is TEST_DATABASE_URL (unset: a SQLite file in the run directory); Redis is
    TEST_REDIS_URL (default db 15 of the local server) with a key prefix of its own. Under
    pytest-xdist each parallel process gets a database and a Redis db of its own (``gw1``: db 14
    and database ``<name>_gw1``), so their data, queues and workers never meet.
    """
    for name in ("logs", "run", "prometheus"):
        (RUN_DIR / name).mkdir(parents=True, exist_ok=True)
    lane = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    os.environ.update(
        {
            "PROCTOR_DATA_DIR": str(DATA),
            "PROCTOR_LOG_DIR": str(RUN_DIR / "logs"),
            "PROCTOR_RUN_DIR": str(RUN_DIR / "run"),
            # Several Gunicorn workers and Celery processes: metrics are aggregated through files.
            "PROMETHEUS_MULTIPROC_DIR": str(RUN_DIR / "prometheus"),
            "REDIS_URL": _redis_lane(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"), lane),
            "PROCTOR_REDIS_PREFIX": "proctor-test:",
            "PROCTOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "PROCTOR_MERGE_GRACE_S": "3",
            "PROCTOR_OFFLINE_AFTER_S": "60",
            "DATABASE_URL": _database_lane(os.environ.get("TEST_DATABASE_URL"), lane)
            or f"sqlite:///{DATA / 'proctor.db'}",
        }
    )


def _redis_lane(url: str, lane: int) -> str:
    """The Redis db of one parallel test process: the given db for the first, one below per lane."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) - lane
    if db < 0 or db == 13:  # 13 is the operations tests' own
        raise SystemExit(f"TEST_REDIS_URL {url}: no free Redis db for parallel test process {lane}")
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _database_lane(url: str | None, lane: int) -> str | None:
    """The database of one parallel test process on a server database (created when missing)."""
    if not url or not lane:
        return url
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import URL, make_url

    own = make_url(url).set(database=f"{make_url(url).database}_gw{lane}")
    server = create_engine(URL.create(own.drivername, own.username, own.password, own.host, own.port,
                                      query=own.query))
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{own.database}`"))
    server.dispose()
    return own.render_as_string(hide_password=False)


# --- polling and processes ------------------------------------------------------------------------


def wait_until(condition, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - keep polling; report the last error
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def migrate_from_nothing(database_url: str) -> None:
    """Drop every table of ``database_url`` and run the migrations from the first: a database as a
    fresh install has it (the suite's, a benchmark's, the soak's)."""
    from sqlalchemy import text

    from proctor.db import make_engine
    from proctor.schema import metadata

    engine = make_engine(database_url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "DATABASE_URL": database_url})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_the_suite() -> None:
    """Run in the child before exec: SIGTERM when the test process dies, even by SIGKILL. A worker
    left behind by a killed run would go on consuming the queues of the next run on the same Redis,
    with this run's data directory (the libc handle is opened before the fork, on purpose)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class PoolDiscipline:
    """While entered, records each pooled database connection taken by a thread that already holds
    one (``nested``: the stack of each such checkout). Connections are tracked by pool record, so
    one returned from another thread (the garbage collector's) is still counted back."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._holder: dict[int, int] = {}  # id of the pool record -> the thread holding it
        self.nested: list[str] = []

    def _checkout(self, _dbapi_conn, record, _proxy) -> None:
        import threading
        import traceback

        me = threading.get_ident()
        with self._lock:
            if me in self._holder.values():
                self.nested.append("".join(traceback.format_stack(limit=20)))
            self._holder[id(record)] = me

    def _checkin(self, _dbapi_conn, record) -> None:
        with self._lock:
            self._holder.pop(id(record), None)

    def __enter__(self) -> PoolDiscipline:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.listen(Pool, "checkout", self._checkout)
        event.listen(Pool, "checkin", self._checkin)
        return self

    def __exit__(self, *_exc) -> None:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.remove(Pool, "checkout", self._checkout)
        event.remove(Pool, "checkin", self._checkin)


class Process:
    """A child process in its own process group, stopped (and reaped) at teardown, and sent
    SIGTERM if the test process dies without a teardown."""

    def __init__(self, args: list[str], log_name: str, env: dict | None = None):
        self.log_path = RUN_DIR / "logs" / log_name
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_the_suite,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gunicorn(log_name: str, workers: int = 2, port: int | None = None, **env: str) -> tuple[Process, str]:
    """The app under real Gunicorn (the project's gunicorn_config.py, as in production); returns it and its URL
    once /health answers (with any status: 503 is an answer too). ``port``: a given one (a server
    started again where its clients expect it), else a free one."""
    port = port or free_port()
    proc = Process(
        [str(BIN / "gunicorn"), "-c", "gunicorn_config.py", "server:app"],
        log_name,
        env={"PROCTOR_BIND": f"127.0.0.1:{port}", "PROCTOR_WEB_WORKERS": str(workers), **env},
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.alive() and requests.get(f"{base}/health", timeout=10).status_code,
            timeout=60,
            what="gunicorn to answer /health",
        )
    except AssertionError:
        proc.stop()
        raise AssertionError("gunicorn did not start:\n" + proc.log()[-3000:]) from None
    return proc, base


def start_worker(queue: str, concurrency: int, name: str, ping_broker: str | None = None, **env: str) -> Process:
    """A Celery worker on ``queue``, answering pings; ``env`` changes its settings (it reads them
    from its environment)."""
    proc = Process(
        [
            str(BIN / "celery"), "-A", "celery_config.celery_app", "worker",
            "-Q", queue, "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel=INFO",
            "--without-gossip", "--without-mingle",
        ],
        f"worker-{name}.log",
        env=env,
    ).start()
    return wait_worker_ready(proc, name, ping_broker)


def wait_worker_ready(proc: Process, name: str, ping_broker: str | None = None) -> Process:
    """Poll until the worker answers a ping (on ``ping_broker``, default the suite's Redis)."""
    if ping_broker:
        from celery import Celery

        celery_app = Celery(broker=ping_broker, set_as_current=False)
    else:
        from celery_config import celery_app

    def answers():
        if not proc.alive():
            raise AssertionError("worker exited:\n" + proc.log()[-3000:])
        # A ping waits its whole timeout when nobody answers: short ones notice the start sooner.
        return celery_app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=0.25)

    try:
        wait_until(answers, timeout=60, interval=0.05, what=f"celery worker {name}")
    except AssertionError:
        proc.stop()  # never leave a half-started worker consuming another run's queue
        raise
    return proc


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m proctor.cli ARGS`` as the operator runs it, from the repository root."""
    return subprocess.run([sys.executable, "-m", "proctor.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def raw_request(base: str, head: str, body: bytes = b"", source: str | None = None) -> tuple[int, bytes]:
    """Send ``head`` and ``body`` over a plain socket (what no HTTP library sends: a lying
    Content-Length, a body cut short) and read the answer to the end; (status, raw answer)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10,
                                  source_address=(source, 0) if source else None) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


# --- transports -----------------------------------------------------------------------------------


class SourceAddressAdapter(HTTPAdapter):
    """Send from a chosen local address (any 127.0.0.0/8 address works on Linux loopback)."""

    def __init__(self, source: str, **kw):
        self.source = source
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kw)


class HttpTransport:
    """Real HTTP to ``base`` (a Gunicorn), from ``source`` (a loopback address) when given."""

    def __init__(self, base: str, source: str | None = None):
        self.base, self.source = base, source
        self.session = requests.Session()
        if source:
            self.session.mount("http://", SourceAddressAdapter(source))

    def at(self, source: str) -> "HttpTransport":
        return HttpTransport(self.base, source)

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=60, **kw)


class AppResponse:
    """A Flask test response, read whole, seen through what the tests read of ``requests``'."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.get_data()
        response.close()  # a file response holds its file open until closed

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class AppTransport:
    """Flask's test client in this process; ``source`` is the client address the app sees."""

    def __init__(self, app, source: str = "127.0.0.1"):
        self.app, self.source = app, source
        self.client = app.test_client()

    def at(self, source: str) -> "AppTransport":
        return AppTransport(self.app, source)

    def __call__(self, method: str, path: str, *, headers=None, json=None, data=None, files=None, params=None):
        if files:  # requests' (filename, content[, type]) become werkzeug's (stream, filename[, type])
            data = {**(data or {}), **{field: _upload(*spec) for field, spec in files.items()}}
        # requests says "Content-Length: 0" for an empty body; werkzeug would say nothing.
        empty = method not in ("GET", "HEAD") and not data and json is None
        response = self.client.open(
            path, method=method, headers=headers or {}, json=json, data=data, query_string=params,
            content_length=0 if empty else None, environ_base={"REMOTE_ADDR": self.source},
        )
        return AppResponse(response)


def _upload(filename: str, content, content_type: str | None = None) -> tuple:
    stream = BytesIO(content) if isinstance(content, bytes) else content
    return (stream, filename, content_type) if content_type else (stream, filename)


# --- the token API --------------------------------------------------------------------------------


def iso(dt: datetime) -> str:
    return dt.isoformat()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique(prefix: str) -> str:
    """An id no other test uses (the database is shared by the whole run)."""
    return f"{prefix}{time.monotonic_ns() % 10**10}"


def silence(session_id: int) -> None:
    """Make the session's last heartbeat older than the offline cutoff, as if its client had
    been silent that long (presence lives in Redis; this writes it there)."""
    from proctor import presence  # after install_environment: the settings are the suite's
    from proctor.config import settings

    presence.track(session_id, now=time.time() - settings().offline_after_s - 5)


def error_code(response) -> str:
    """The token API's error code, after checking the error has exactly the documented shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def session_id(session: dict | int) -> int:
    return session["session_id"] if isinstance(session, dict) else session


class Api:
    """The token API as an exam client and a teacher use it. ``token`` is ``"teacher"`` for the
    admin token, a session token, or None for no Authorization header."""

    def __init__(self, transport, admin_token: str = ADMIN_TOKEN):
        self.transport = transport
        self.admin_token = admin_token

    def at(self, source: str) -> "Api":
        """The same API called from another client address."""
        return Api(self.transport.at(source), self.admin_token)

    def request(self, method: str, path: str, token: str | None = None, **kw):
        headers = dict(kw.pop("headers", None) or {})
        if token == "teacher":
            headers["Authorization"] = f"Bearer {self.admin_token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return self.transport(method, path, headers=headers, **kw)

    def get(self, path: str, token: str | None = None, **kw):
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, **kw):
        return self.request("POST", path, token, **kw)

    def put(self, path: str, token: str | None = None, **kw):
        return self.request("PUT", path, token, **kw)

    def patch(self, path: str, token: str | None = "teacher", **kw):
        return self.request("PATCH", path, token, **kw)

    def delete(self, path: str, token: str | None = "teacher", **kw):
        return self.request("DELETE", path, token, **kw)

    # --- conveniences -------------------------------------------------------------------
    def create_exam(self, title="Exam", start_in_s=-60, length_s=3600, roster=None) -> dict:
        now = datetime.now(timezone.utc)
        body = {
            "title": title,
            "starts_at": iso(now + timedelta(seconds=start_in_s)),
            "ends_at": iso(now + timedelta(seconds=start_in_s + length_s)),
        }
        if roster is not None:
            body["roster"] = roster
        r = self.post("/api/exams", "teacher", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def entry_code(self, exam_id: int) -> str:
        r = self.get(f"/api/exams/{exam_id}", "teacher")
        assert r.status_code == 200, r.text
        return r.json()["entry_code"]

    def join(self, exam_id: int, student_id: str) -> dict:
        """A student's join with the exam's entry code, as the hall's students join."""
        r = self.try_join(exam_id, student_id)
        assert r.status_code == 201, r.text
        return r.json()

    def try_join(self, exam_id: int, student_id: str, **body):
        body = {"student_id": student_id, "entry_code": self.entry_code(exam_id), **body}
        return self.post(f"/api/exams/{exam_id}/join", json=body)

    def upload(self, session: dict, seq: int, data: bytes, media_type="video/mp4", **headers):
        h = {"Content-Type": media_type, **headers}
        return self.put(f"/api/sessions/{session['session_id']}/segments/{seq}", session["token"], data=data, headers=h)

    def heartbeat(self, session: dict):
        return self.post(f"/api/sessions/{session['session_id']}/heartbeat", session["token"])

    def screenshot(self, session: dict, data: bytes, content_type="image/png", kind=None):
        path = f"/api/sessions/{session['session_id']}/screenshots" + (f"?kind={kind}" if kind else "")
        return self.post(path, session["token"], data=data, headers={"Content-Type": content_type})

    def finish(self, session: dict, last_seq: int | None = None) -> None:
        body = {} if last_seq is None else {"last_seq": last_seq}
        r = self.post(f"/api/sessions/{session['session_id']}/finish", session["token"], json=body)
        assert r.status_code == 202, r.text

    def session(self, session: dict | int) -> dict:
        """The teacher's view of a session (a join's answer or a session id)."""
        r = self.get(f"/api/sessions/{session_id(session)}", "teacher")
        assert r.status_code == 200, r.text
        return r.json()

    def roster_sessions(self, exam_id: int) -> list[dict]:
        r = self.get(f"/api/exams/{exam_id}/sessions", "teacher")
        assert r.status_code == 200, r.text
        return r.json()["sessions"]

    def wait_for_state(self, session: dict | int, states=FINAL_STATES, timeout: float = MERGE_TIMEOUT_S) -> dict:
        """Poll the session until its state is one of ``states``; its view then."""
        return wait_until(
            lambda: (v := self.session(session))["state"] in states and v,
            timeout=timeout, interval=0.3, what=f"session {session_id(session)} to reach {set(states)}",
        )


# --- the desktop seats' protocol ------------------------------------------------------------------


class Seat:
    """A desktop seat, written from the protocol document: no token, known by its address."""

    def __init__(self, api: Api, addr: str, student_id: str, student_name: str):
        self.addr = addr
        self.student_id, self.student_name = student_id, student_name
        self.exam_id: int | None = None
        self.http = api.transport.at(addr)

    def get(self, path: str):
        return self.http("GET", path)

    def post_json(self, path: str, body: dict):
        return self.http("POST", path, json=body)

    def post_form(self, path: str, fields: dict, files: dict | None = None):
        return self.http("POST", path, data=fields, files=files or None)

    # The calls, with the protocol's field names.
    def login(self) -> dict:
        r = self.post_json("/api/login", {"student_id": self.student_id, "student_name": self.student_name})
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] == "success":
            self.exam_id = body["exam_id"]
        return body

    def select_exam(self, exam_id: int):
        r = self.post_json(
            "/api/login/select_exam",
            {"student_id": self.student_id, "student_name": self.student_name, "exam_id": exam_id},
        )
        if r.status_code == 200 and r.json()["status"] == "success":
            self.exam_id = exam_id
        return r

    def ids(self) -> dict:
        return {"student_id": self.student_id, "exam_id": self.exam_id}

    def heartbeat(self):
        return self.post_json("/api/heartbeat", self.ids())

    def recording(self, sequence: int, path: Path, timestamp: str | None = None):
        return self.send_recording(sequence, path.name, path.read_bytes(), timestamp)

    def send_recording(self, sequence: int, filename: str, data: bytes, timestamp: str | None = None):
        fields = {
            **self.ids(),
            "timestamp": timestamp or datetime.now().isoformat(timespec="seconds"),
            "sequence": str(sequence),
            "fps": "2",
            "quality": "80",
        }
        return self.post_form("/api/screen_recording", fields, {"video": (filename, data, "application/octet-stream")})

    def screenshot(self, png: bytes):
        fields = {**self.ids(), "username": self.student_name, "timestamp": datetime.now().isoformat()}
        return self.post_form("/api/screenshot", fields, {"screenshot": ("screen.png", png, "image/png")})

    def frame(self, jpeg: bytes):
        fields = {**self.ids(), "timestamp": datetime.now().isoformat()}
        return self.post_form("/api/screen_frame", fields, {"frame": ("frame.jpg", jpeg, "image/jpeg")})

    def violation(self, reason: str, png: bytes | None = None):
        fields = {**self.ids(), "username": self.student_name, "reason": reason,
                  "timestamp": datetime.now().isoformat()}
        files = {"screenshot": ("violation.png", png, "image/png")} if png else None
        return self.post_form("/api/violation", fields, files)

    def logout(self):
        return self.post_json("/api/logout", self.ids())


def seat_error(r, status: int) -> str:
    """The seat's error message, after checking the status and the seat's error shape."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"status", "message"} and body["status"] == "error", body
    assert body["message"]
    return body["message"]


# --- images ---------------------------------------------------------------------------------------


def png_image(width: int = 8, height: int = 8, rgb=(200, 30, 30)) -> bytes:
    """A minimal valid PNG, written by hand (zlib only)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg_image(tmp_path: Path) -> bytes:
    """A one-frame JPEG made by FFmpeg."""
    out = tmp_path / "frame.jpg"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=blue:size=64x64",
         "-frames:v", "1", "-y", str(out)],
        check=True,
    )
    return out.read_bytes()
