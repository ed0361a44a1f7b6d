"""Memory per upload stays bounded: a 48 MiB segment does not grow the Gunicorn worker by 48 MiB."""
from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import Api, HttpTransport, start_gunicorn


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_large_upload_is_streamed_not_buffered(tmp_path):
    proc, base = start_gunicorn("gunicorn-memory.log", workers=1)
    try:
        api = Api(HttpTransport(base))
        s = api.join(api.create_exam(title="memory")["id"], "big-upload")
        assert api.upload(s, 0, os.urandom(1024 * 1024)).status_code == 201  # warm up the worker
        worker = worker_pid(proc.proc.pid)
        before = peak_rss_kib(worker)

        body = tmp_path / "big.bin"
        with open(body, "wb") as fh:
            for _ in range(48):
                fh.write(os.urandom(1024 * 1024))
        with open(body, "rb") as fh:  # requests streams a file and sends its Content-Length
            r = api.put(f"/api/sessions/{s['session_id']}/segments/1", s["token"], data=fh,
                        headers={"Content-Type": "video/mp4"})
        assert r.status_code == 201, r.text
        assert r.json()["size"] == 48 * 1024 * 1024

        growth_mib = (peak_rss_kib(worker) - before) / 1024
        assert growth_mib < 16, f"the worker's peak memory grew by {growth_mib:.1f} MiB for a 48 MiB upload"
    finally:
        proc.stop()
