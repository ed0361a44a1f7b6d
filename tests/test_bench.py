"""scripts/bench.sh --smoke: every benchmark runs and its table is written, row for row.

No figure is asserted (the machine is shared and noisy): what is checked is that the command works
from end to end and that the table it writes has every row, with a figure, a baseline and a
verdict, and names the machine.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

ROWS = (
    "Token heartbeat", "Bare Flask 204 after one Redis call", "Seat heartbeat", "segment upload", "Web workers' RSS", "Upload late in a session",
    "Merge of", "The exam's end", "Status check", "Merge worker SIGKILLed", "Slow clients", "A whole hall",
)


def test_the_smoke_run_writes_every_row_of_the_table(tmp_path):
    if shutil.which("wrk") is None and os.geteuid() != 0:
        pytest.skip("wrk is not installed and bench.sh cannot install it without root (apt-get install wrk)")
    out = tmp_path / "results.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "bench.sh"), "--smoke", "--out", str(out)], cwd=tmp_path,
                          env={**env, "TMPDIR": str(tmp_path)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = out.read_text()
    assert "smoke run" in text and f"Linux {platform.release()}" in text and f"{os.cpu_count()} cores" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| benchmark | figure | baseline (same run) | ratio | target | met? |"
    rows = table[1:]
    for name in ROWS:
        [row] = [r for r in rows if name in r.split(" | ")[0]]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6 and all(cells), row
        assert cells[3].endswith("×") and cells[5] in ("yes", "**no**"), row
    assert len(rows) == len(ROWS)
    assert "| Token heartbeat" in done.stdout  # the table is printed too
    assert not list(tmp_path.glob("proctor-bench-*")), "the temporary directory is removed"
