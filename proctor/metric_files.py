"""Prometheus multiprocess files of processes that no longer run.

In multiprocess mode every process that counts something writes ``<kind>_<pid>.db`` files in
PROMETHEUS_MULTIPROC_DIR, and ``/metrics`` sums all of them. A dead process's files stay: its live
gauges keep being reported, and the directory grows with every worker restart. The systemd units
(ExecStartPre) and the start scripts prune them before a start. Files of a process that runs are
never touched (it keeps writing them); a dead pid that an unrelated process reuses keeps its files
until that process ends too. Sums of counters drop when a dead process's files go, which
Prometheus's ``rate()`` reads as a counter reset.

The pruning process counts nothing, but the modules a command imports may create its files (an
unlabelled counter makes one at import): ``prune_dead`` removes those too.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

_PID = re.compile(r"_(\d+)\.db$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prune_dead(directory: Path) -> list[str]:
    """Remove the ``.db`` files of pids that no longer run, and this process's; returns their names."""
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.glob("*.db")):
        match = _PID.search(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and pid_alive(pid):
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # pruned meanwhile by another unit's start
            continue
        removed.append(path.name)
    return removed
