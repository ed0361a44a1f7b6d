"""A database outage under load: a private MariaDB stopped for 30 s and started again, under a real
Gunicorn with students heartbeating and uploading (token API and desktop seats) and a merge worker.

While it is down every call that needs the database is answered 503 ``database_unavailable`` with
Retry-After (never a 500, never a hang past the database timeouts of ``proctor.db``), token-API
heartbeats go on from Redis, uploads store nothing; afterwards the same processes serve again and
the retried uploads are stored exactly once.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Imported here, with the suite's settings: proctor.worker binds its Celery app to the Redis of the
# settings in force when it is first imported, and this test changes them for a while.
from proctor.worker import MERGE_QUEUE, RECONCILE_TASK
from tests.helpers import (
    BIN,
    FINAL_STATES,
    MERGE_TIMEOUT_S,
    ROOT,
    RUN_DIR,
    Api,
    HttpTransport,
    Process,
    Seat,
    error_code,
    free_port,
    seat_error,
    start_gunicorn,
    start_worker,
    wait_until,
)
from tests.media_helpers import make_clip
from tests.test_faults import PrivateRedis, private_redis  # noqa: F401 - the fixture, shared

OUTAGE_S = 30
CALLS_DURING_OUTAGE = 3  # of each kind by each client, at least


class PrivateMariaDB:
    """A mariadbd of the test's own (root without password, loopback only), stopped and started
    again on the same data directory."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.dir = directory
        self.proc: Process | None = None

    @staticmethod
    def missing() -> str | None:
        """Why none can be started here, or None."""
        for binary in ("mariadb-install-db", "mariadbd"):
            if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists():
                return f"{binary} is not installed"
        return None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/proctor"

    def _server_args(self) -> list[str]:
        args = ["--no-defaults", f"--datadir={self.dir / 'data'}", "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=32M"]
        return args + (["--user=root"] if os.geteuid() == 0 else [])  # mariadbd refuses root otherwise

    def install(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [shutil.which("mariadb-install-db") or "mariadb-install-db", *self._server_args(),
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )

    def start(self) -> None:
        binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = Process(
            [binary, *self._server_args(), f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.dir / 'sock'}", f"--pid-file={self.dir / 'pid'}", "--skip-name-resolve",
             "--skip-log-bin"],
            f"mariadb-{self.port}.log",
        ).start()
        wait_until(self._answers, timeout=60, what="private mariadbd")

    def _answers(self) -> bool:
        import pymysql

        if not self.proc.alive():
            raise AssertionError("mariadbd exited:\n" + self.proc.log()[-3000:])
        pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
        return True

    def create_database(self) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            conn.cursor().execute("CREATE DATABASE IF NOT EXISTS proctor CHARACTER SET utf8mb4")
        finally:
            conn.close()
        subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "DATABASE_URL": self.url}, timeout=120)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(timeout=60)


@pytest.fixture
def private_mariadb():
    why = PrivateMariaDB.missing()
    if why:
        pytest.skip(f"no private MariaDB: {why}")
    server = PrivateMariaDB(RUN_DIR / f"mariadb-{free_port()}")
    server.install()
    server.start()
    server.create_database()
    yield server
    server.stop()


def longest_database_wait() -> float:
    """How long a call may wait on an unreachable database, by proctor.db's timeouts: a failed
    pre-ping read, then a connect and its greeting, or a pool checkout."""
    from proctor import db

    return max(db.CONNECT_TIMEOUT_S + 2 * db.READ_TIMEOUT_S, db.POOL_TIMEOUT_S)


class BoundedTransport(HttpTransport):
    """Real HTTP that gives up (and so fails the test) when a call hangs past the database
    timeouts, with room for a loaded machine."""

    limit_s = longest_database_wait() + 15

    def at(self, source: str) -> "BoundedTransport":
        return BoundedTransport(self.base, source)

    def __call__(self, method: str, path: str, **kw):
        return self.session.request(method, self.base + path, timeout=self.limit_s, **kw)


@dataclass
class Call:
    client: str
    kind: str  # heartbeat | upload
    sent: str  # the phase when it was sent and when it was answered
    answered: str
    status: int | str  # or "timeout"/the error's name
    response: object = None
    seq: int | None = None


class Load:
    """Clients calling in a loop (a heartbeat, then the next upload, again; an upload answered
    503 is sent again) while the test moves through the phases of the outage."""

    def __init__(self):
        self.phase = "before"
        self.calls: list[Call] = []
        self.stored: dict[str, list[int]] = {}
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def add(self, name: str, heartbeat, upload, first_seq: int) -> None:
        self.stored[name] = []
        thread = threading.Thread(target=self._run, args=(name, heartbeat, upload, first_seq), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _call(self, name: str, kind: str, send, seq: int | None = None) -> Call:
        sent = self.phase
        try:
            response = send()
            status = response.status_code
        except Exception as err:  # noqa: BLE001 - a hang or a broken connection is the finding
            response, status = None, type(err).__name__
        call = Call(name, kind, sent, self.phase, status, response, seq)
        self.calls.append(call)
        return call

    def _run(self, name: str, heartbeat, upload, seq: int) -> None:
        while not self.stopping.is_set():
            self._call(name, "heartbeat", heartbeat)
            if self._call(name, "upload", lambda: upload(seq), seq).status in (200, 201):
                self.stored[name].append(seq)
                seq += 1
            self.stopping.wait(0.2)  # the pace of the clients, not a synchronisation

    def during_outage(self, kind: str, client: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == kind and c.sent == c.answered == "down"
                and (client is None or c.client == client)]

    def every_client_called(self, n: int, phase: str) -> bool:
        return all(
            sum(1 for c in self.calls if c.client == name and c.sent == c.answered == phase) >= 2 * n
            for name in self.stored
        )

    def every_client_stored_since(self, mark: int) -> bool:
        return all(
            any(c.client == name and c.kind == "upload" and c.status in (200, 201) for c in self.calls[mark:])
            for name in self.stored
        )

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=BoundedTransport.limit_s + 5)


def _stack_env(db: PrivateMariaDB, redis_server: PrivateRedis, data_dir: Path) -> dict[str, str]:
    """The outage's stack on its own database, Redis and data directory (session ids start at 1
    there too: their segment folders must not meet the suite's)."""
    return {"DATABASE_URL": db.url, "REDIS_URL": redis_server.url, "PROCTOR_DATA_DIR": str(data_dir)}


def test_database_outage_is_503_then_everything_recovers(private_mariadb, private_redis, tmp_path,
                                                         settings_changed):
    env = _stack_env(private_mariadb, private_redis, tmp_path / "data")
    web, base = start_gunicorn("gunicorn-db-outage.log", **env)
    worker = None
    load = Load()
    try:
        api = Api(BoundedTransport(base))
        clip = make_clip(tmp_path / "clip.mp4").read_bytes()
        students = [f"db-out-{n}" for n in range(3)]
        seats = [Seat(api, f"127.0.0.{31 + n}", f"db-seat-{n}", f"Seat Student {n}") for n in range(2)]
        exam = api.create_exam(roster=[*students, "db-merge", "db-away", "db-gone",
                                       *({"student_id": s.student_id, "name": s.student_name} for s in seats)])
        joined = {sid: api.join(exam["id"], sid) for sid in students}
        for seat in seats:
            assert seat.login()["status"] == "success"

        # A student marked offline by the status check, who comes back during the outage.
        settings_changed(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"])
        away, gone = api.join(exam["id"], "db-away"), api.join(exam["id"], "db-gone")
        _mark_offline(away)
        _mark_offline(gone)

        # A finished session whose merge is queued, with no merge worker running yet.
        merging = api.join(exam["id"], "db-merge")
        for seq in (0, 1):
            assert api.upload(merging, seq, clip).status_code == 201
        api.finish(merging)

        for sid, s in joined.items():
            load.add(sid, lambda s=s: api.heartbeat(s), lambda seq, s=s: api.upload(s, seq, clip), 0)
        for seat in seats:
            load.add(seat.student_id, seat.heartbeat, lambda seq, seat=seat: seat.send_recording(seq, "seg.mp4", clip),
                     1)
        wait_until(lambda: load.every_client_stored_since(0), timeout=60, what="uploads before the outage")

        load.phase = "stopping"  # calls meet the outage from the shutdown's start
        private_mariadb.stop()
        load.phase, down_since = "down", time.monotonic()
        # The merge worker starts during the outage and takes the queued merge.
        worker = start_worker("video_merge", 2, "db-outage-merge", ping_broker=private_redis.url, **env)
        wait_until(lambda: _merge_marker_gone(private_redis.url, merging["session_id"]), timeout=60,
                   what="the merge worker to take the queued merge")
        wait_until(lambda: load.every_client_called(CALLS_DURING_OUTAGE, "down")
                   and time.monotonic() - down_since >= OUTAGE_S, timeout=OUTAGE_S + 120,
                   what=f"{CALLS_DURING_OUTAGE} calls of each kind by each client during the outage")
        for s in (away, gone):
            back = api.heartbeat(s)
            assert back.status_code == 200 and back.json()["tracked"], back.text

        load.phase = "restarting"
        private_mariadb.start()
        load.phase, mark = "after", len(load.calls)
        wait_until(lambda: load.every_client_stored_since(mark), timeout=60,
                   what="every client storing uploads again")
        load.stop()

        _check_answers(load, students, seats)
        _check_nothing_half_stored(api, joined, load, tmp_path / "data")
        api.finish(gone)  # after the outage, before the sweep that writes what it deferred
        _check_back_online_recorded(away, gone)

        # The merge that met the outage ended its Celery task, but the session is not failed: the
        # reconcile task (Beat's, every 2 minutes; sent here to the merge worker's queue) queues it
        # again once its recording has been still for a minute, and it is merged.
        assert api.session(merging)["state"] != "failed"
        assert _reconciled(api, private_redis, merging)["state"] == "merged"
    finally:
        load.stop()
        if worker:
            worker.stop()
        web.stop()
    assert "Traceback" not in web.log(), web.log()[-3000:]


def _mark_offline(session: dict) -> None:
    """What the status check does to a student silent for longer than the offline cutoff."""
    from proctor import presence
    from proctor.config import settings

    presence.track(session["session_id"], now=time.time() - settings().offline_after_s - 5)
    assert session["session_id"] in presence.sweep_offline(settings().offline_after_s)
    assert _presence_in_database(session) == "offline"


def _presence_in_database(session: dict) -> str:
    from sqlalchemy import select

    from proctor.db import engine
    from proctor.schema import sessions

    with engine().connect() as conn:
        return conn.execute(select(sessions.c.presence).where(sessions.c.id == session["session_id"])).scalar()


def _check_back_online_recorded(session: dict, finished_since: dict) -> None:
    """The return heartbeat of the outage could not write it; the next sweep does, unless the
    session finished meanwhile (finishing wrote the newer change: offline)."""
    from proctor import presence
    from proctor.config import settings

    assert _presence_in_database(session) == "offline"
    presence.sweep_offline(settings().offline_after_s)
    assert _presence_in_database(session) == "online"
    assert _presence_in_database(finished_since) == "offline"


def _reconciled(api: Api, redis_server: PrivateRedis, session: dict) -> dict:
    from celery import Celery

    broker = Celery(broker=redis_server.url, set_as_current=False)

    def merged_once_reconciled():
        view = api.session(session)
        if view["state"] in FINAL_STATES:
            return view
        broker.send_task(RECONCILE_TASK, queue=MERGE_QUEUE)
        return None

    return wait_until(merged_once_reconciled, timeout=MERGE_TIMEOUT_S + 60, interval=5,
                      what="the reconciled merge to end")


def _merge_marker_gone(redis_url: str, session_id: int) -> bool:
    import redis

    return not redis.Redis.from_url(redis_url).exists(f"proctor-test:merge:queued:{session_id}")


def _check_answers(load: Load, students: list[str], seats: list[Seat]) -> None:
    unexpected = [(c.client, c.kind, c.sent, c.answered, c.status) for c in load.calls
                  if c.status not in (200, 201, 503)]
    assert not unexpected, unexpected  # no 500, no hang, no broken connection
    refused = [(c.client, c.kind, c.sent, c.status, c.response.text[:200]) for c in load.calls
               if c.sent == c.answered and c.sent in ("before", "after") and c.status not in (200, 201)]
    assert not refused, refused  # only calls that met the outage may be refused

    for sid in students:
        beats = load.during_outage("heartbeat", sid)
        assert len(beats) >= CALLS_DURING_OUTAGE
        # Heartbeats of the token API need only Redis (the token is cached there at join).
        assert all(c.status == 200 and c.response.json()["tracked"] for c in beats), [c.status for c in beats]
        uploads = load.during_outage("upload", sid)
        assert uploads and all(c.status == 503 for c in uploads)
        for c in uploads:
            assert error_code(c.response) == "database_unavailable"
            assert int(c.response.headers["Retry-After"]) > 0

    for seat in seats:
        # A seat's heartbeat needs only Redis while its binding and the exam's end are cached there
        # (the end for seconds); past that, and for every upload, the database: refused in the
        # seats' shape.
        for c in load.during_outage("heartbeat", seat.student_id):
            if c.status != 200:
                seat_error(c.response, 503)
                assert int(c.response.headers["Retry-After"]) > 0
            else:
                assert c.response.json()["status"] == "success"
        for c in load.during_outage("upload", seat.student_id):
            seat_error(c.response, 503)
            assert int(c.response.headers["Retry-After"]) > 0


def _check_nothing_half_stored(api: Api, joined: dict, load: Load, data_dir: Path) -> None:
    """Each seq the client was told stored is stored once, in the database and on disk; no stray
    or temporary file."""
    for sid, s in joined.items():
        view = api.session(s)
        assert view["segments"] == view["next_seq"] == len(load.stored[sid]) and view["missing"] == [], view
        folder = data_dir / "segments" / str(s["session_id"])
        assert sorted(p.name for p in folder.iterdir()) == [f"{seq:06d}.mp4" for seq in range(view["next_seq"])]
