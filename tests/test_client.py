"""The command-line exam client (``python -m proctor.client``) against the real stack: Gunicorn, a
merge worker, FFmpeg recording a test source. Each run ends in a merged recording whose duration
is what the client recorded, through a server outage and through a client killed mid-run."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from proctor.client.spool import LIST_NAME, Spool, SpoolBusy, mark_run_started
from tests.helpers import Api, HttpTransport, Process, start_gunicorn, unique, wait_until

# A crashed client's rejoin waits until its session counts as gone: short here, so the test does
# not wait the production minute; heartbeats often enough to stay well inside it.
SERVER_ENV = {"PROCTOR_OFFLINE_AFTER_S": "5", "PROCTOR_HEARTBEAT_INTERVAL_S": "1"}
CLIENT_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def stack():
    proc, base = start_gunicorn("gunicorn-client.log", **SERVER_ENV)
    yield base
    proc.stop()


def start_client(base: str, exam: dict, code: str, spool: Path, log_name: str, *options: str) -> Process:
    args = [sys.executable, "-m", "proctor.client", "--server", base, "--exam", str(exam["id"]),
            "--spool", str(spool), "--source", "testsrc", "--size", "320x240", "--segment-seconds", "2", *options]
    return Process(args, log_name, env={"PROCTOR_ENTRY_CODE": code}).start()


def wait_exit(client: Process) -> str:
    """The client's output once it ended, after checking it ended well."""
    wait_until(lambda: not client.alive(), timeout=CLIENT_TIMEOUT_S, interval=0.3, what="the client to end")
    assert client.proc.returncode == 0, client.log()[-4000:]
    return client.log()


def state_of(spool: Path) -> dict:
    return json.loads((spool / "state.json").read_text())


def session_of(spool: Path) -> int:
    return wait_until(lambda: state_of(spool).get("session_id"), timeout=60, what="the client to join")


def waiting(spool: Path) -> int:
    return sum(1 for _ in (spool / "pending").iterdir())


def recording_into(spool: Path) -> list[str]:
    """Command lines of the processes that name ``spool`` (an FFmpeg writing into it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if args and Path(args[0].decode(errors="replace")).name == "ffmpeg" and str(spool).encode() in b" ".join(args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def assert_whole_recording(api: Api, spool: Path) -> dict:
    """Every recorded segment is in the merged recording, which lasts what was recorded."""
    state = state_of(spool)
    assert state["finished"] is True and waiting(spool) == 0
    view = api.wait_for_state(state["session_id"])
    assert view["state"] == "merged", view
    assert view["last_seq"] == state["recorded"] - 1 and view["missing"] == [], (view, state)
    assert abs(view["recording"]["duration"] - state["recorded_s"]) <= 1.0, (view["recording"], state)
    return view


def test_a_run_ends_merged_with_the_recorded_duration(stack, merge_worker, tmp_path):
    api = Api(HttpTransport(stack))
    student = unique("cli")
    exam = api.create_exam(roster=[student])
    spool = tmp_path / "spool"
    client = start_client(stack, exam, api.entry_code(exam["id"]), spool, f"client-{student}.log",
                          "--student-id", student, "--duration", "8")
    out = wait_exit(client)
    assert state_of(spool)["recorded"] == 4, out
    assert_whole_recording(api, spool)
    assert "summary: 1 sessions" in out and "acknowledged 4" in out, out


def test_segments_wait_in_the_spool_while_the_server_is_down(merge_worker, tmp_path):
    server, base = start_gunicorn("gunicorn-client-outage.log", **SERVER_ENV)
    port = int(base.rsplit(":", 1)[1])
    api = Api(HttpTransport(base))
    student = unique("cli")
    exam = api.create_exam(roster=[student])
    spool = tmp_path / "spool"
    # No --duration: it records until Ctrl-C (SIGINT), then sends what it has and finishes.
    client = start_client(base, exam, api.entry_code(exam["id"]), spool, f"client-{student}.log",
                          "--student-id", student)
    try:
        sid = session_of(spool)
        wait_until(lambda: api.session(sid)["next_seq"] >= 2, timeout=60, what="the first uploads")
        server.stop()
        # Down for about 20 s: until nine 2 s segments wait on disk.
        wait_until(lambda: waiting(spool) >= 9, timeout=120, interval=0.3, what="segments to wait in the spool")
        assert "unreachable" in client.log()
        server, _ = start_gunicorn("gunicorn-client-outage.log", port=port, **SERVER_ENV)
        held = state_of(spool)["recorded"]
        wait_until(lambda: api.session(sid)["next_seq"] >= held + 1, timeout=120, interval=0.3,
                   what="the spool's segments and a new one to arrive")
        client.signal_group(signal.SIGINT)
        out = wait_exit(client)
        assert state_of(spool)["recorded"] > held, out
        assert_whole_recording(api, spool)
    finally:
        client.stop()
        server.stop()


def test_a_killed_client_started_again_sends_the_rest(stack, merge_worker, tmp_path):
    api = Api(HttpTransport(stack))
    student = unique("cli")
    exam = api.create_exam(roster=[student])
    code, spool = api.entry_code(exam["id"]), tmp_path / "spool"
    options = ("--student-id", student, "--duration", "16")
    first = start_client(stack, exam, code, spool, f"client-{student}-1.log", *options)
    sid = session_of(spool)
    wait_until(lambda: api.session(sid)["next_seq"] >= 2, timeout=60, what="the first uploads")
    assert recording_into(spool)
    first.kill()
    # Its FFmpeg dies with it (it would otherwise go on writing into the spool of the next run).
    wait_until(lambda: not recording_into(spool), timeout=30, what="the killed client's FFmpeg to end")
    second = start_client(stack, exam, code, spool, f"client-{student}-2.log", *options)
    out = wait_exit(second)
    assert f"rejoined session {sid}" in out, out
    view = assert_whole_recording(api, spool)
    assert view["id"] == sid


def test_simulated_students_each_take_the_exam(stack, merge_worker, tmp_path):
    api = Api(HttpTransport(stack))
    prefix = unique("sim")
    exam = api.create_exam(roster=[f"{prefix}{n}" for n in (1, 2, 3)])
    client = start_client(stack, exam, api.entry_code(exam["id"]), tmp_path, f"client-{prefix}.log",
                          "--students", "3", "--student-id", prefix, "--duration", "6")
    out = wait_exit(client)
    assert "summary: 3 sessions (3 finished)" in out, out
    assert "acknowledged 9" in out and "latency upload: p50" in out and "heartbeats:" in out, out
    for n in (1, 2, 3):
        assert_whole_recording(api, tmp_path / f"{prefix}{n}")


def test_a_spool_numbers_what_a_crashed_run_finished_and_drops_the_half_written(tmp_path):
    """The window between FFmpeg closing a segment and the client moving it: the next run moves it."""
    spool = Spool(tmp_path).open()
    spool.update(session_id=1, next_seq=5, recorded=5, recorded_s=10.0)
    run_dir = spool.new_run_dir()
    mark_run_started(run_dir, 1_700_000_000_000)
    for name in ("seg000001.mp4", "seg000002.mp4"):
        (run_dir / name).write_bytes(b"finished")
    (run_dir / "seg000003.mp4").write_bytes(b"half")  # FFmpeg was killed writing it: never listed
    # seg000000 was moved before the crash; the last line was being written when it came.
    (run_dir / LIST_NAME).write_text("seg000000.mp4,0.000000,2.000000\nseg000001.mp4,2.000000,4.000000\n"
                                     "seg000002.mp4,4.000000,6.000000\nseg000003.mp4,6.0")
    assert spool.recover() == (2, 1)
    assert [(s.seq, s.captured_ms) for s in spool.segments()] == [(5, 1_700_000_002_000), (6, 1_700_000_004_000)]
    assert spool.state["next_seq"] == 7 and spool.state["recorded_s"] == 14.0
    assert not run_dir.exists()
    with pytest.raises(SpoolBusy):  # one client per spool
        Spool(tmp_path).open()
    spool.close()
