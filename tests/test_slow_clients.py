"""Slow and idle clients hold nothing other students need, and request data cannot forge log lines.

Against real Gunicorn with the project's gunicorn_config.py (its default worker class), with a
shorter read timeout so that cut connections are seen within seconds. bench/slow_clients.py
measures the latencies; these tests only check that everything works and what gets cut.
"""
from __future__ import annotations

import io
import logging
import resource
import socket
import threading
from pathlib import Path

import pytest

from proctor.serving import EscapingFormatter
from tests.helpers import (
    ADMIN_TOKEN,
    DATA,
    RUN_DIR,
    Api,
    HttpTransport,
    Seat,
    png_image,
    raw_request,
    start_gunicorn,
    unique,
    wait_until,
)
from tests.media_helpers import make_clip

IDLE = 1000
TRICKLING = 20
READ_TIMEOUT_S = 10
ATTACKER = "127.0.0.2"


@pytest.fixture(scope="module")
def paced_server():
    """Gunicorn as configured, with a 10 s read timeout; its URL and port."""
    _allow_open_files(IDLE + TRICKLING + 512)
    proc, base = start_gunicorn("gunicorn-slow-clients.log", PROCTOR_WEB_READ_TIMEOUT_S=str(READ_TIMEOUT_S))
    yield base
    proc.stop()


def _allow_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    elif soft < wanted:
        pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _connect(base: str, head: bytes = b"", source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(base)), timeout=30, source_address=(source, 0))
    sock.sendall(head)
    return sock


def _accept_queue(port: int) -> int:
    """Connections the kernel completed that Gunicorn has not accepted yet (the listening socket's
    receive queue in /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(queues.split(":")[1], 16)
    raise AssertionError(f"no listening socket on port {port}")


def _upload_head(session: dict, seq: int, length: int) -> bytes:
    return (f"PUT /api/sessions/{session['session_id']}/segments/{seq} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {session['token']}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _wait_closed(sock: socket.socket, timeout: float) -> bytes:
    """Poll until the server has closed ``sock``; what it answered before (b"" for nothing)."""
    return wait_until(lambda: (a := _closed_or_answered(sock)) is not None and [a], timeout=timeout,
                      interval=0.5, what="the server to close the connection")[0]


def _closed_or_answered(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, once it has; None while the connection is open."""
    sock.settimeout(0.2)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""
    if data:  # an answer: read it to the end (the server closes after it)
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _stored(session: dict) -> list[str]:
    folder = DATA / "segments" / str(session["session_id"])
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Trickle:
    """Connections that each send one byte a second of an upload body until the server closes."""

    def __init__(self, socks: list[socket.socket]):
        self.socks = socks
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            for sock in self.socks:
                try:
                    sock.send(b"x")
                except OSError:
                    pass  # cut by the server: what the test waits for

    def __enter__(self) -> "Trickle":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """A small real segment (uploads are checked to be media)."""
    return make_clip(tmp_path_factory.mktemp("clip") / "segment.mp4", seconds=0.5).read_bytes()


def test_idle_and_trickling_connections_leave_heartbeats_and_uploads_working(paced_server, clip):
    teacher = Api(HttpTransport(paced_server), ADMIN_TOKEN)
    students = [unique("slow-s") for _ in range(4)]
    seat_id, cheat_id = unique("slow-seat"), unique("slow-trickler")
    exam = teacher.create_exam(roster=[*students, seat_id, cheat_id])
    sessions = [teacher.join(exam["id"], s) for s in students]
    seat = Seat(teacher, "127.0.0.51", seat_id, "Seat Student")
    assert seat.login()["status"] == "success"
    cheat = teacher.join(exam["id"], cheat_id)

    # One address: a thousand connections that send the headers of a body and then nothing, and
    # uploads of a real session's segments trickling one byte a second.
    idle_head = (b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 4096\r\n\r\n")
    idle = [_connect(paced_server, idle_head) for _ in range(IDLE)]
    trickling = [_connect(paced_server, _upload_head(cheat, seq, 65536)) for seq in range(TRICKLING)]
    try:
        with Trickle(trickling):
            # Gunicorn has taken every one of them (none waits in the kernel's queue any more).
            wait_until(lambda: _accept_queue(_port(paced_server)) == 0, timeout=60, what="the attack to be accepted")

            for session in sessions:
                r = Api(HttpTransport(paced_server), ADMIN_TOKEN).heartbeat(session)
                assert r.status_code == 200, r.text
            assert seat.heartbeat().status_code == 200
            assert teacher.upload(sessions[0], 0, clip).status_code == 201
            assert teacher.screenshot(sessions[1], png_image()).status_code == 201

            # The trickling uploads are cut (their body ends short: refused) and store nothing.
            for sock in trickling:
                answer = _wait_closed(sock, timeout=READ_TIMEOUT_S * 12)
                assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    finally:
        for sock in idle + trickling:
            sock.close()
    assert _stored(cheat) == []
    assert teacher.session(cheat)["segments"] == 0
    assert _stored(sessions[0]) == ["000000.mp4"]


def test_a_connection_stalled_mid_body_is_closed_and_stores_nothing(paced_server, clip):
    teacher = Api(HttpTransport(paced_server), ADMIN_TOKEN)
    exam = teacher.create_exam()
    session = teacher.join(exam["id"], unique("stall"))
    half = clip[: len(clip) // 2]
    sock = _connect(paced_server, _upload_head(session, 0, len(clip)) + half, source="127.0.0.1")
    with sock:
        answer = _wait_closed(sock, timeout=READ_TIMEOUT_S * 6)
    # Either a 4xx for the short body or a plain close; never a stored half.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert _stored(session) == [] and teacher.session(session)["segments"] == 0
    # The same upload, whole, succeeds.
    assert teacher.upload(session, 0, clip).status_code == 201


# --- log lines ------------------------------------------------------------------------------------


def _log_lines(name: str, marker: str) -> list[str]:
    text = (RUN_DIR / "logs" / name).read_bytes().decode("utf-8", "replace")
    return [line for line in text.split("\n") if marker in line]


def test_control_characters_in_requests_are_escaped_in_the_access_log(paced_server):
    marker = unique("forge")
    # Encoded CR LF, NUL, a quote and a backslash in the path; a quote, backslash and a non-ASCII
    # character (two bytes of UTF-8) in the user agent.
    status, _ = raw_request(paced_server, f"GET /{marker}%0D%0Aforged%00line%22q%5C HTTP/1.1\r\nHost: x\r\n"
                                          f"User-Agent: ua-{marker}\xff\"\\\r\nConnection: close\r\n\r\n")
    assert status == 404
    # Raw CR, NUL and ESC in the request line: the parser refuses them (400) where it does.
    for raw in ("\rforged", "\x00forged", "\x1bforged"):
        status, _ = raw_request(paced_server, f"GET /{marker}{raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 400

    def logged():
        lines = _log_lines("gunicorn_access.log", marker)
        return len(lines) == 1 and lines

    [line] = wait_until(logged, timeout=30, what="the access log line")
    assert f'"GET /{marker}\\r\\nforged\\x00line\\"q\\\\ HTTP/1.1" 404' in line, line
    assert f'"ua-{marker}\\xc3\\xbf\\"\\\\"' in line, line
    for name in ("gunicorn_access.log", "gunicorn_error.log"):
        text = (RUN_DIR / "logs" / name).read_bytes()
        assert b"\x00" not in text and b"\r" not in text
        assert not any(line.startswith(b"forged") for line in text.split(b"\n"))


def test_the_apps_log_lines_escape_what_they_quote():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger(unique("escaping"))
    log.addHandler(handler)
    log.propagate = False
    try:
        raise ValueError("bad name 'x\r\nINFO forged record\x00'")
    except ValueError:
        log.exception("upload of %s failed", "seg\r\nINFO forged\x1b[2J.mp4")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ERROR upload of seg\\r\\nINFO forged\\x1b[2J.mp4 failed"
    assert all(line.startswith("  ") for line in lines[1:]) and len(lines) > 2, lines
    assert "\x00" not in stream.getvalue() and "\x1b" not in stream.getvalue()
