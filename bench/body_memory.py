"""Benchmark: a Gunicorn worker's peak memory for hostile bodies.

Usage: TEST_REDIS_URL=redis://127.0.0.1:6379/N .venv/bin/python bench/body_memory.py [--json-mib 500]

Each case runs against a fresh single-worker Gunicorn (the project's gunicorn_config.py, as in production)
on a temporary SQLite database and the Redis db of TEST_REDIS_URL (emptied first), and prints the
worker's peak RSS (VmHWM) before and after the request, with the answer's status and size:

- ``json-length``: a JSON body of --json-mib MiB with its Content-Length to ``POST /api/exams/<id>/join``
- ``json-chunked``: the same body sent chunked (no Content-Length)
- ``xlsx-bomb``: a ~1 MB workbook whose sheet claims 702 columns over 100,000 rows of one
  2,000-character cell, imported with ``POST /api/admin/students/import``

Run it from another checkout to compare (the case's code is the checkout's; this script only sends).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import BIN, ROOT, Api, HttpTransport, install_environment, start_gunicorn  # noqa: E402
from tests.test_bounds import wide_bomb  # noqa: E402
from tests.test_upload_memory import peak_rss_kib, worker_pid  # noqa: E402


def fresh_database() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, check=True, capture_output=True)


def json_body(path: Path, mib: int) -> Path:
    with open(path, "wb") as fh:  # sparse: costs no disk
        fh.write(b'{"student_id": "')
        fh.truncate(mib * 1024 * 1024)
    return path


def measure(name: str, send) -> dict:
    proc, base = start_gunicorn(f"bench-{name}.log", workers=1)
    try:
        api = Api(HttpTransport(base))
        exam = api.create_exam(title=name, roster=["warm"])
        api.post(f"/api/exams/{exam['id']}/join", json={"student_id": "warm"})  # warm up the worker
        worker = worker_pid(proc.proc.pid)
        before = peak_rss_kib(worker)
        try:
            r = send(base, exam["id"])
            answer = {"status": r.status_code, "answer_bytes": len(r.content)}
        except requests.RequestException as err:
            answer = {"status": None, "error": type(err).__name__}
        after = peak_rss_kib(worker) if Path(f"/proc/{worker}").exists() else None
        return {"case": name, "rss_before_mib": round(before / 1024), "rss_peak_mib": after and round(after / 1024),
                **answer}
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-mib", type=int, default=500)
    args = parser.parse_args()
    install_environment()
    fresh_database()
    tmp = Path(tempfile.mkdtemp(prefix="proctor-bench-"))
    body = json_body(tmp / "body.json", args.json_mib)
    bomb = wide_bomb()
    headers = {"Content-Type": "application/json"}

    def json_length(base, exam_id):
        with open(body, "rb") as fh:
            return requests.post(f"{base}/api/exams/{exam_id}/join", data=fh, headers=headers, timeout=600)

    def json_chunked(base, exam_id):
        def chunks():
            with open(body, "rb") as fh:
                while block := fh.read(1024 * 1024):
                    yield block
        return requests.post(f"{base}/api/exams/{exam_id}/join", data=chunks(), headers=headers, timeout=600)

    def xlsx_bomb(base, _exam_id):
        return requests.post(f"{base}/api/admin/students/import", files={"file": ("bomb.xlsx", bomb)}, timeout=600,
                             headers={"Authorization": f"Bearer {os.environ['PROCTOR_ADMIN_TOKEN']}"})

    print(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cpu", "checkout": str(ROOT),
                      "json_mib": args.json_mib, "xlsx_bytes": len(bomb)}))
    for name, send in (("json-length", json_length), ("json-chunked", json_chunked), ("xlsx-bomb", xlsx_bomb)):
        print(json.dumps(measure(name, send)), flush=True)
    body.unlink()


if __name__ == "__main__":
    main()
