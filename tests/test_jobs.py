"""Handing work to the workers. The web app sends and never waits for a result: under Gunicorn's
gevent worker, where Celery's per-thread state is per greenlet, a send through the app with the
result backend made a backend for each greenlet (scanning every installed package's entry points)
and subscribed that greenlet's own Redis connection to the task's result channel. Sends go
through a publisher without a backend; the workers still keep every merge's result."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from proctor.worker import celery_app
from tests.helpers import ROOT, unique, wait_until
from tests.media_helpers import make_clip

GREENLETS = 20

# As in a Gunicorn gevent worker: patched first, then the app's modules; each greenlet sends once.
SENDS_FROM_GREENLETS = textwrap.dedent(f"""
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from celery.app import backends
    from proctor import jobs

    made = []
    by_url = backends.by_url
    backends.by_url = lambda *a, **kw: made.append(1) or by_url(*a, **kw)
    gevent.joinall([gevent.spawn(jobs.enqueue_probe, -1, 0, n) for n in range({GREENLETS})], raise_error=True)
    print(len(made))
""")


def test_greenlets_sending_work_make_no_result_backend_each():
    done = subprocess.run([sys.executable, "-c", SENDS_FROM_GREENLETS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) <= 1, done.stdout


def test_the_workers_keep_a_merge_result(api, merge_worker, tmp_path):
    exam = api.create_exam()
    s = api.join(exam["id"], f"jobs{unique('')}")
    clip = make_clip(tmp_path / "a.mp4", seconds=1.0, size="320x240")
    assert api.upload(s, 0, clip.read_bytes(), "video/mp4").status_code == 201
    api.finish(s)
    view = api.wait_for_state(s)
    assert view["state"] == "merged", view
    result = wait_until(lambda: (r := celery_app.AsyncResult(view["recording"]["task_id"])).state == "SUCCESS" and r,
                        timeout=60, interval=0.2, what="the merge's result in the result backend")
    assert result.result["session_id"] == s["session_id"]
