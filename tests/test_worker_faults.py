"""Faults of whole processes and of the disk, against real processes: a merge worker SIGKILLed and
restarted the way its systemd unit does, two status checks at once, the fsync order a power cut
needs, and the pruning of dead processes' metrics files."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from tests.helpers import (
    ADMIN_TOKEN,
    BIN,
    DATA,
    ROOT,
    RUN_DIR,
    Api,
    HttpTransport,
    Process,
    free_port,
    sha256,
    start_worker,
    wait_until,
    wait_worker_ready,
)
from tests.media_helpers import ffprobe_streams, make_clip
from tests.test_recovery import paused

UNITS = ROOT / "systemd"


# --- the merge worker's unit ----------------------------------------------------------------------


def unit_service(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit file: every value of each key, in order."""
    values: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def unit_commands(service: dict[str, list[str]], **overrides: str) -> list[list[str]]:
    """ExecStartPre... then ExecStart as systemd would run them from this checkout: the install
    root is the repository, ``%%`` is a literal ``%``, and ``${VAR}`` comes from the unit's
    Environment= defaults overridden by this test's environment (in the env file's place)."""
    env = unit_environment(service, **overrides)
    lines = service.get("ExecStartPre", []) + service["ExecStart"]
    expanded = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line.replace("/opt/proctor", str(ROOT)))
                for line in lines]
    return [shlex.split(line.replace("%%", "%")) for line in expanded]


def unit_environment(service: dict[str, list[str]], **overrides: str) -> dict[str, str]:
    defaults = dict(item.split("=", 1) for line in service.get("Environment", []) for item in shlex.split(line))
    return {**{k: v.replace("/opt/proctor", str(ROOT)) for k, v in defaults.items()}, **os.environ, **overrides}


def seconds(value: str) -> float:
    """A systemd time span as RestartSec takes it (``5``, ``5s``, ``500ms``)."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|sec)?", value.strip()).groups()
    return float(number) / (1000 if unit == "ms" else 1)


class UnitProcess:
    """A service started as its unit file says: ExecStartPre commands, then ExecStart."""

    def __init__(self, unit: str, log_name: str):
        self.service = unit_service(unit)
        self.log_name = log_name
        self.proc: Process | None = None

    def start(self) -> Process:
        *pre, main = unit_commands(self.service)
        env = unit_environment(self.service)
        for command in pre:
            subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
        self.proc = Process(main, self.log_name, env=env).start()
        return self.proc

    def restart_after_crash(self) -> tuple[Process, float]:
        """What systemd does when the main process died of SIGKILL: with Restart=on-failure (or
        on-abnormal, always) it waits RestartSec, then starts the unit again."""
        assert self.service["Restart"][-1] in {"on-failure", "on-abnormal", "always"}, self.service["Restart"]
        delay = seconds(self.service.get("RestartSec", ["100ms"])[-1])
        time.sleep(delay)  # the unit's own delay, reproduced: not a synchronisation
        return self.start(), delay


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live processes of a process group: (pid, command line)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append((int(stat.parent.name), cmdline))
    return members


def _slow_session(api, tmp_path, name: str) -> dict:
    """A session whose merge re-encodes (the resolution changes) for long enough to be killed."""
    exam = api.create_exam()
    s = api.join(exam["id"], name)
    for seq in range(6):
        size = "1280x720" if seq % 2 else "960x540"
        clip = make_clip(tmp_path / f"{name}{seq}.mp4", seconds=4.0, size=size, rate=25, audio=False)
        assert api.upload(s, seq, clip.read_bytes(), "video/mp4").status_code == 201
    return s


def test_whole_merge_worker_sigkilled_and_restarted_by_its_unit_merges_once(api, merge_worker, tmp_path):
    """SIGKILL to the merge worker's main process mid-FFmpeg, then the unit's restart: the
    restarted worker re-queues the merge whose worker died (the broker would hold its message for
    the hour-long visibility timeout) and exactly one verified recording results."""
    from proctor.db import engine
    from proctor.schema import recordings, segments

    s = _slow_session(api, tmp_path, "unit-killed")
    sid = s["session_id"]
    seg_dir = DATA / "segments" / str(sid)
    unit = UnitProcess("proctor-worker-merge.service", "unit-worker-merge.log")
    with paused(merge_worker):  # the unit's worker is the only one on the queue
        worker = wait_worker_ready(unit.start(), "merge")
        try:
            api.finish(s)
            api.wait_for_state(s, {"merging"}, timeout=60)
            wait_until(lambda: any("ffmpeg" in cmd for _, cmd in group_members(worker.proc.pid)),
                       timeout=60, interval=0.05, what="FFmpeg to run in the merge worker")
            killed_at = time.monotonic()
            os.kill(worker.proc.pid, signal.SIGKILL)  # the main process only
            worker.proc.wait(10)
            # Its pool processes and their FFmpeg die with it (parent-death signals): the whole
            # worker is gone, nothing finishes the merge behind the restarted one's back.
            wait_until(lambda: not group_members(worker.proc.pid), timeout=30, what="the worker's children to die")

            assert api.session(s)["state"] == "merging"
            assert len(list(seg_dir.iterdir())) == 6  # nothing deleted before a verified recording
            assert not list((DATA / "recordings").glob(f"session-{sid}.*"))

            worker, delay = unit.restart_after_crash()
            wait_worker_ready(worker, "merge")
            view = api.wait_for_state(s, timeout=300)
            recovered_s = time.monotonic() - killed_at
        finally:
            if unit.proc is not None:
                unit.proc.stop()
    print(f"\nmerge worker SIGKILLed mid-merge: merged {recovered_s:.1f} s after the kill "
          f"(RestartSec {delay:.0f} s, lease ttl 30 s, then the merge itself)")

    assert view["state"] == "merged", view
    assert view["recording"]["attempts"] == 2
    files = list((DATA / "recordings").glob(f"session-{sid}.*"))
    assert len(files) == 1 and not list((DATA / "recordings").glob(f".tmp-session-{sid}-*"))
    assert sha256(files[0].read_bytes()) == view["recording"]["sha256"]
    assert abs(float(ffprobe_streams(files[0])["format"]["duration"]) - 24.0) <= 1.0
    with engine().connect() as conn:
        rows = conn.execute(select(recordings.c.status).where(recordings.c.session_id == sid)).scalars().all()
        left = conn.execute(select(func.count()).select_from(segments)
                            .where(segments.c.session_id == sid, segments.c.deleted_at.is_(None))).scalar()
    assert rows == ["merged"] and left == 0
    assert not list(seg_dir.iterdir())


def test_a_starting_worker_looks_again_when_the_leases_held_now_lapse():
    """What the restarted worker waits for before its second reconcile: the longest time a merge
    lease held now has left (a dead holder's lapses up to a ttl after its last renewal), not a
    whole ttl from its start; locks of other names do not count, glob characters match themselves."""
    from proctor import locks
    from proctor.worker import MERGE_LEASE_PREFIX

    assert locks.longest_hold(MERGE_LEASE_PREFIX) == 0
    held = [locks.Lock(f"{MERGE_LEASE_PREFIX}{n}", ttl) for n, ttl in ((1, 5), (2, 20))]
    others = [locks.Lock("status_check", 300), locks.Lock("merge*", 300)]
    try:
        assert all(lock.acquire() for lock in held + others)
        assert 15 < locks.longest_hold(MERGE_LEASE_PREFIX) <= 20
        assert 290 < locks.longest_hold("merge*") <= 300  # the "*" is no wildcard
    finally:
        for lock in held + others:
            lock.release()
    assert locks.longest_hold(MERGE_LEASE_PREFIX) == 0


# --- two status checks at once --------------------------------------------------------------------


def _silent_sessions(api, count: int) -> list[int]:
    """Sessions whose last heartbeat was an hour ago: the next status check marks them offline."""
    from proctor import presence

    exam = api.create_exam()
    silent = [api.join(exam["id"], f"silent{n}")["session_id"] for n in range(count)]
    for sid in silent:
        presence.track(sid, now=time.time() - 3600)
    return silent


def _assert_one_at_a_time_and_one_offline_event(since: str, silent: list[int]) -> list[dict]:
    """The checks that ran since ``since`` never overlapped; each silent session went offline
    exactly once. Returns those checks."""
    from proctor import runs
    from proctor.db import engine
    from proctor.schema import presence_events

    ran = [r for r in runs.recent_status_checks() if r["started_at"] >= since]
    spans = sorted((r["started_at"], r["finished_at"]) for r in ran)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:])), spans
    with engine().connect() as conn:
        events = conn.execute(
            select(presence_events.c.session_id, func.count())
            .where(presence_events.c.session_id.in_(silent), presence_events.c.kind == "offline")
            .group_by(presence_events.c.session_id)
        ).all()
    assert dict(events) == {sid: 1 for sid in silent}
    return ran


def test_status_checks_from_two_workers_never_overlap_nor_double_presence_events(api):
    """Two status workers get a burst of checks: the lease lets one run at a time, and every
    silent student gets exactly one offline event."""
    from proctor.clock import utcnow
    from proctor.worker import celery_app

    silent = _silent_sessions(api, 40)
    since = utcnow().isoformat()
    workers = [start_worker("status_check", 1, f"status-{n}") for n in "ab"]
    try:
        pending = [celery_app.send_task("celery_tasks.status_check_task", queue="status_check") for _ in range(30)]
        results = [p.get(timeout=120) for p in pending]
    finally:
        for w in workers:
            w.stop()
    ran = _assert_one_at_a_time_and_one_offline_event(since, silent)
    # Every check that ran is among those that never overlapped (a check another test's Beat left
    # queued may have run too, under the same lease).
    done = {r["started_at"] for r in results if not r.get("skipped")}
    assert done and done <= {r["started_at"] for r in ran}


def test_two_beats_at_once_double_nothing(api, tmp_path):
    """Two real Beats (the mistake the lease guards against), each with its schedule file, and two
    status workers: both Beats' checks are delivered, none overlaps another, no event doubles."""
    from proctor.clock import utcnow

    silent = _silent_sessions(api, 40)
    since = utcnow().isoformat()
    workers = [start_worker("status_check", 1, f"status-{n}") for n in "ab"]
    beats = [Process([str(BIN / "celery"), "-A", "celery_config.celery_app", "beat", "--loglevel", "INFO",
                      "-s", str(tmp_path / f"schedule-{n}")], f"beat-{n}.log").start() for n in "ab"]

    def checks_done() -> int:
        return sum(len(re.findall(r"status_check_task\[[^]]+\] succeeded", w.log())) for w in workers)

    try:
        # Each Beat sends its first check one period (30 s) after it starts.
        wait_until(lambda: all("Sending due task status-check" in b.log() for b in beats) and checks_done() >= 2,
                   timeout=180, interval=0.5, what="both Beats' status checks to run")
    finally:
        for process in beats + workers:
            process.stop()
    assert _assert_one_at_a_time_and_one_offline_event(since, silent)


# --- power loss: what is answered is on disk ------------------------------------------------------

TRACED = "fsync,fdatasync,rename,renameat,renameat2,link,linkat,mkdir,mkdirat"


def strace_prefix(trace: Path) -> list[str]:
    """strace following every thread and child, printing each fd with its path (``-y``)."""
    tool = shutil.which("strace")
    if tool is None:
        pytest.skip("strace is not installed (apt-get install strace; scripts/test.sh does)")
    probe = subprocess.run([tool, "-o", "/dev/null", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()}")
    return [tool, "-f", "-y", "-qq", "-o", str(trace), "-e", f"trace={TRACED}"]


def traced_calls(trace: Path) -> list[tuple[str, list[str]]]:
    """(syscall, the paths it names: its path arguments, else its ``-y`` fd paths), in the order
    the calls began; a call interrupted by another thread's is counted where it began."""
    calls = []
    for line in trace.read_text().splitlines():
        match = re.match(r"\d+\s+(\w+)\((.*)", line)
        if match and "resumed>" not in line:
            args = match.group(2)
            named = re.findall(r'"([^"]*)"', args)  # link, rename, mkdir: the paths given
            calls.append((match.group(1), named or re.findall(r"<(/[^>]*)>", args)))  # fsync: its fd's
    return calls


def position(calls, syscalls: set[str], path: str, start: int = 0, last_arg: bool = False) -> int:
    """Index of the first call from ``start`` among ``syscalls`` naming ``path`` (as its last path
    argument when ``last_arg``: the new name of a link or rename)."""
    for index in range(start, len(calls)):
        name, paths = calls[index]
        if name in syscalls and paths and (paths[-1] == path if last_arg else path in paths):
            return index
    raise AssertionError(f"no {syscalls} of {path} after call {start}")


FSYNC = {"fsync", "fdatasync"}
MKDIR = {"mkdir", "mkdirat"}


def assert_durably_published(calls, final: Path, publish: set[str]) -> None:
    """The new directory's parent is synced after the mkdir, the file's data before the link or
    rename that names it, its directory after."""
    made = position(calls, MKDIR, str(final.parent))
    assert position(calls, FSYNC, str(final.parent.parent), made) > made
    named = position(calls, publish, str(final), last_arg=True)
    staged = calls[named][1][0]
    assert Path(staged).parent == final.parent and Path(staged).name.startswith(".tmp-")
    data_synced = max(i for i, (name, paths) in enumerate(calls[:named]) if name in FSYNC and staged in paths)
    assert data_synced < named < position(calls, FSYNC, str(final.parent), named)


def test_an_answered_upload_is_on_disk_before_the_answer(tmp_path):
    """Gunicorn under strace: the segment's data is fsynced, then linked to its name, then its
    directory fsynced (and the session's new directory in its parent), before the 201."""
    trace = RUN_DIR / "logs" / "strace-upload.txt"
    port = free_port()
    web = Process(strace_prefix(trace) + [str(BIN / "gunicorn"), "-c", "gunicorn_config.py", "server:app"],
                  "gunicorn-strace.log", env={"PROCTOR_BIND": f"127.0.0.1:{port}", "PROCTOR_WEB_WORKERS": "1"}).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: web.alive() and requests.get(f"{base}/health", timeout=10).status_code,
                   timeout=90, what="gunicorn under strace")
        http = Api(HttpTransport(base), ADMIN_TOKEN)
        s = http.join(http.create_exam()["id"], "power-cut")
        assert http.upload(s, 0, make_clip(tmp_path / "c.mp4").read_bytes()).status_code == 201
    finally:
        web.stop()
    final = DATA / "segments" / str(s["session_id"]) / "000000.mp4"
    assert final.is_file()
    assert_durably_published(traced_calls(trace), final, {"link", "linkat", "rename", "renameat", "renameat2"})


def test_a_merged_recording_is_on_disk_before_it_is_reported(tmp_path):
    """The merge engine (the worker's, run here by the operator's merge-dir) fsyncs the verified
    output, renames it into place, then fsyncs its directory (new: its parent too)."""
    folder = tmp_path / "seat"
    folder.mkdir()
    for n in range(2):
        make_clip(folder / f"seg_{n}.mp4")
    out = tmp_path / "published" / "out.mp4"
    trace = tmp_path / "strace-merge.txt"
    done = subprocess.run(strace_prefix(trace) + [sys.executable, "-m", "proctor.cli", "merge-dir", str(folder), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == str(out)
    assert_durably_published(traced_calls(trace), out, {"rename", "renameat", "renameat2"})


# --- metrics files of dead processes --------------------------------------------------------------

WRITE_METRICS = "from proctor import metrics; metrics.MERGES.labels('merged').inc(); metrics.MERGE_SECONDS.observe(1)"


def metric_pids(directory: Path) -> set[int]:
    return {int(re.search(r"_(\d+)\.db$", p.name).group(1)) for p in directory.glob("*.db")}


@pytest.fixture
def metrics_dir(tmp_path):
    """A multiprocess directory holding the files of a process that has exited and of one that
    runs (both real prometheus_client writers); yields (directory, dead pid, live pid)."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    dead = subprocess.run([sys.executable, "-c", f"{WRITE_METRICS}; import os; print(os.getpid())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    live = Process([sys.executable, "-c", f"{WRITE_METRICS}; import time; time.sleep(600)"], "metrics-writer.log",
                   env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}).start()
    try:
        wait_until(lambda: live.proc.pid in metric_pids(directory), timeout=60, what="the live writer's files")
        yield directory, int(dead.stdout), live.proc.pid
    finally:
        live.stop()


@pytest.mark.parametrize("unit", ["proctor-worker-merge.service", "proctor-web.service"])
def test_units_prune_the_metrics_files_of_dead_processes_only(unit, metrics_dir):
    """The ExecStartPre of each unit that shares PROMETHEUS_MULTIPROC_DIR, run as systemd would:
    the dead process's files go, the running one's stay and still add up."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    directory, dead, live = metrics_dir
    assert metric_pids(directory) == {dead, live}
    dead_files = {p.name for p in directory.glob(f"*_{dead}.db")}
    service = unit_service(unit)
    assert "PROMETHEUS_MULTIPROC_DIR=" in " ".join(service["Environment"])
    pre = unit_commands(service, PROMETHEUS_MULTIPROC_DIR=str(directory))[:-1]
    assert [c[1:] for c in pre] == [["-m", "proctor.cli", "prune-metrics"]]
    env = unit_environment(service, PROMETHEUS_MULTIPROC_DIR=str(directory))
    done = subprocess.run(pre[0], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert metric_pids(directory) == {live}
    assert dead_files <= set(json.loads(done.stdout)["removed"])

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    assert 'proctor_merges_total{outcome="merged"} 1.0' in generate_latest(registry).decode()


def test_start_scripts_prune_the_metrics_files_of_dead_processes(metrics_dir):
    """scripts/lib.sh's prune_metrics, which the web and merge worker start scripts call."""
    directory, dead, live = metrics_dir
    lib = ROOT / "scripts" / "lib.sh"
    done = subprocess.run(["bash", "-c", 'source "$1"; prune_metrics', "prune", str(lib)],
                          env={**os.environ, "PROCTOR_RUN_DIR": str(directory.parent)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert metric_pids(directory) == {live}
    for script in ("start_web.sh", "start_celery_worker.sh"):
        assert "\nprune_metrics\n" in (ROOT / "scripts" / script).read_text()


def test_prune_metrics_without_a_directory_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run([sys.executable, "-m", "proctor.cli", "prune-metrics"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error:")
