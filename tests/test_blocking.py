"""proctor.blocking: a call that blocks its thread leaves a gevent worker's other connections
served, and is an ordinary call anywhere else."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from proctor import blocking
from tests.helpers import ROOT

# A read from an empty pipe blocks the calling thread until the other greenlet writes: made on
# the event loop's own thread it would never return (the writer could never run).
UNDER_GEVENT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import os, gevent
    from proctor import blocking
    r, w = os.pipe()
    writer = gevent.spawn(lambda: os.write(w, b"x"))
    print(blocking.run(os.read, r, 1).decode(), writer.dead)
""")


def test_under_gevent_the_loop_goes_on_while_the_call_blocks():
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["x", "True"]


def test_elsewhere_it_is_a_plain_call():
    r, w = os.pipe()
    os.write(w, b"y")
    assert blocking.run(os.read, r, 1) == b"y"
    os.close(r)
    os.close(w)
