"""Benchmark: how long a merge is delayed when its whole merge worker is SIGKILLed mid-merge and
systemd restarts it.

Usage: TEST_REDIS_URL=redis://127.0.0.1:6379/N .venv/bin/python bench/worker_recovery.py [--runs 3]

The merge worker runs as ``systemd/proctor-worker-merge.service`` says (its ExecStartPre and
ExecStart, RestartSec before the restart), on a temporary SQLite database and the Redis db of
TEST_REDIS_URL (emptied first). Each run merges one session undisturbed (the baseline), then kills
the worker's main process while FFmpeg works on a second, identical session and restarts it.
Printed, as medians over the runs: the undisturbed merge, kill → merge re-queued, kill → merged,
and kill → merged as a multiple of the undisturbed merge. The wait is RestartSec + start-up + the
lease's ttl (a dead worker's lease must lapse before its merge is taken again) + the merge again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import BIN, ROOT, Api, AppTransport, install_environment, wait_until, wait_worker_ready  # noqa: E402


def fresh_state() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True)


def one_run(api: Api, tmp: Path, n: int) -> dict:
    from tests.test_worker_faults import UnitProcess, _slow_session, group_members

    baseline, victim = _slow_session(api, tmp, f"base{n}-"), _slow_session(api, tmp, f"kill{n}-")
    unit = UnitProcess("proctor-worker-merge.service", "bench-unit-worker-merge.log")
    worker = wait_worker_ready(unit.start(), "merge")
    try:
        started = time.monotonic()
        api.finish(baseline)
        assert api.wait_for_state(baseline, timeout=600)["state"] == "merged"
        clean = time.monotonic() - started

        api.finish(victim)
        wait_until(lambda: any("ffmpeg" in cmd for _, cmd in group_members(worker.proc.pid)),
                   timeout=120, interval=0.05, what="FFmpeg in the merge worker")
        killed = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)
        worker, _ = unit.restart_after_crash()
        wait_worker_ready(worker, "merge")
        wait_until(lambda: api.session(victim)["recording"]["attempts"] == 2, timeout=600, interval=0.2,
                   what="the merge to be taken again")
        requeued = time.monotonic() - killed
        assert api.wait_for_state(victim, timeout=600)["state"] == "merged"
        merged = time.monotonic() - killed
    finally:
        if unit.proc is not None:
            unit.proc.stop()
    return {"clean_merge_s": clean, "kill_to_requeued_s": requeued, "kill_to_merged_s": merged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        os.environ.pop("TEST_DATABASE_URL", None)
        install_environment()
        fresh_state()
        from proctor.app import create_app
        from proctor.config import load_settings

        api = Api(AppTransport(create_app(load_settings(os.environ))))
        runs = [one_run(api, Path(tmp), n) for n in range(args.runs)]
    medians = {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}
    medians["kill_to_merged_over_clean_merge"] = round(
        statistics.median(r["kill_to_merged_s"] / r["clean_merge_s"] for r in runs), 2)
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": args.runs,
                      "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
