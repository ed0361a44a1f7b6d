"""Benchmark: one refresh of the console's live exam view, for 500 students against 5.

Usage: TEST_REDIS_URL=redis://127.0.0.1:6379/N .venv/bin/python bench/console_live.py [--repeat R]

Server side: the live view's JSON (``GET /exams/<id>/live``, through Flask's test client: the
roster view, the sessions' progress and one Redis call) for an exam of 500 students on the roster,
450 of them joined with segments and some violations, against an exam of 5 in the same database;
prints the median time of each, their ratio, and the number of SQL statements of each (the same
whatever the size). Browser side: the same 500-student view in headless Chromium (Debian's, through
chromedriver) under Gunicorn; the median time the page's script takes to bring the table up to
date on a filter toggle (synchronous: it takes out or puts back rows, never makes them again).
The cost of a poll's update with every row changed is measured by
tests/test_console_live_browser.py.

Uses the test suite's environment (tests/helpers.py: a temporary SQLite database unless
TEST_DATABASE_URL is set, the Redis db of TEST_REDIS_URL, which is emptied).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import install_environment, migrate_from_nothing, start_gunicorn, wait_until  # noqa: E402
from tests.test_console_browser import PASSWORD, by_id, chromium, sign_in  # noqa: E402
from tests.test_console_live_browser import seed_exam  # noqa: E402


def prepare() -> None:
    import os

    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    migrate_from_nothing(os.environ["DATABASE_URL"])


def signed_in_client(app, username: str):
    import re

    client = app.test_client()
    page = client.get("/sign-in", headers={"Accept": "text/html"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    answer = client.post("/sign-in", data={"username": username, "password": PASSWORD, "csrf_token": token},
                         headers={"Accept": "text/html"})
    assert answer.status_code == 302, answer.status_code
    return client


def server_side(client, exam_id: int, repeat: int) -> tuple[float, int]:
    """Median seconds of one refresh, and the SQL statements it runs."""
    from sqlalchemy import event

    from proctor.db import engine

    statements = []
    count = lambda *args: statements.append(1)  # noqa: E731
    event.listen(engine(), "before_cursor_execute", count)
    assert client.get(f"/exams/{exam_id}/live", headers={"Accept": "application/json"}).status_code == 200
    event.remove(engine(), "before_cursor_execute", count)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(f"/exams/{exam_id}/live", headers={"Accept": "application/json"})
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(statements)


def browser_side(base: str, username: str, exam_id: int, repeat: int) -> float:
    """Median milliseconds the page takes to redraw the table of the exam's students."""
    driver = chromium(Path(tempfile.mkdtemp(prefix="proctor-bench-chromium-")))
    try:
        sign_in(driver, base, username)
        driver.get(f"{base}/exams/{exam_id}")
        wait_until(lambda: len(driver.find_elements("css selector", "#students tr")) >= 500, timeout=60,
                   what="the table")
        toggle = ("const box = document.getElementById('with-violations'); const t = performance.now();"
                  "box.click(); return performance.now() - t;")
        times = [driver.execute_script(toggle) for _ in range(repeat)]
        assert by_id(driver, "students")
        return statistics.median(times)
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    install_environment()
    prepare()
    from proctor.app import create_app
    from proctor.web import accounts

    accounts.create_staff("bench", PASSWORD, accounts.ADMIN)
    small, large = seed_exam(5, 5), seed_exam(500, 450)
    client = signed_in_client(create_app(), "bench")
    small_s, small_q = server_side(client, small, args.repeat)
    large_s, large_q = server_side(client, large, args.repeat)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"live view JSON, 5 students:   {small_s * 1000:7.1f} ms median, {small_q} SQL statements")
    print(f"live view JSON, 500 students: {large_s * 1000:7.1f} ms median, {large_q} SQL statements")
    print(f"ratio 500/5: {large_s / small_s:.1f} (100 times the students)")
    proc, base = start_gunicorn("bench-gunicorn.log")
    try:
        redraw = browser_side(base, "bench", large, args.repeat)
    finally:
        proc.stop()
    print(f"browser redraw of 500 rows: {redraw:.1f} ms median (Chromium, headless)")


if __name__ == "__main__":
    main()
