"""Blocking system calls that must not stall an event loop.

Under Gunicorn's gevent worker (the default, see gunicorn_config.py) every connection of a process
is served by one thread's event loop, so a call that blocks that thread stalls every connection of
the worker, not only its own. An fsync is such a call: it waits for the disk, and on ext4 it may
wait for the whole journal commit, other files' data included (the merge worker writing a
recording at the exam's end). Measured on a hall of 600 clients, heartbeats that Gunicorn answered
in milliseconds took seconds as the clients saw them, while the workers' loops sat in uploads'
fsyncs.

``run`` hands such a call to gevent's pool of native threads when gevent has patched this process
(the calling greenlet waits, the others go on) and makes it directly anywhere else (gthread
workers, Celery workers, the command line).
"""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

T = TypeVar("T")


def run(function: Callable[..., T], *args) -> T:
    if _under_gevent():
        from gevent import get_hub

        return get_hub().threadpool.apply(function, args)
    return function(*args)


def _under_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")
