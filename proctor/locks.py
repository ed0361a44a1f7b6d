"""A Redis lock with an expiry, released only by its owner.

``SET key token NX EX ttl`` to take it and a compare-and-delete script to release it, so a run that
outlived its ttl can never release the lock a newer run now holds.
"""
from __future__ import annotations

import re
import secrets
import threading
from contextlib import contextmanager
from typing import Iterator

from . import redis_client

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lock:
    def __init__(self, name: str, ttl_s: int):
        self.key = redis_client.key("lock", name)
        self.ttl_s = ttl_s
        self.token = secrets.token_hex(16)

    def acquire(self) -> bool:
        return bool(redis_client.client().set(self.key, self.token, nx=True, ex=self.ttl_s))

    def release(self) -> None:
        delete_if(self.key, self.token)


def delete_if(key: str, value: str) -> bool:
    """Delete ``key`` only while it still holds ``value`` (atomically); whether it did."""
    return bool(redis_client.client().eval(_RELEASE, 1, key, value))


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end
return 0
"""


# A dead holder (SIGKILL, power loss) keeps a Lease at most this long; whoever recovers its work
# (a restarted merge worker) waits this long before looking.
LEASE_TTL_S = 30


class Lease(Lock):
    """A lock kept alive by a background thread while its holder runs.

    A short ttl renewed every third of it means a holder that dies (SIGKILL, power loss) frees the
    lock within ``ttl_s`` seconds, while a live holder keeps it for as long as it needs.
    """

    def __init__(self, name: str, ttl_s: int = LEASE_TTL_S):
        super().__init__(name, ttl_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not super().acquire():
            return False
        self._thread = threading.Thread(target=self._renew, name=f"lease:{self.key}", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not redis_client.client().eval(_RENEW, 1, self.key, self.token, self.ttl_s):
                    return  # lost (Redis restarted): the holder finishes; its writes are idempotent
            except Exception:  # noqa: BLE001 - Redis briefly away; try again next tick
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        super().release()


@contextmanager
def held(name: str, ttl_s: int, renewed: bool = False) -> Iterator[bool]:
    """Yield whether the lock was taken; release it afterwards if it was. ``renewed``: a Lease,
    kept while the block runs however long it takes."""
    lock = Lease(name, ttl_s) if renewed else Lock(name, ttl_s)
    taken = lock.acquire()
    try:
        yield taken
    finally:
        if taken:
            lock.release()


def is_held(name: str) -> bool:
    return bool(redis_client.client().exists(redis_client.key("lock", name)))


def longest_hold(prefix: str) -> float:
    """Seconds until the last held lock whose name starts with ``prefix`` lapses if its holder
    stops renewing it now (0.0 when none is held)."""
    client = redis_client.client()
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", redis_client.key("lock", prefix)) + "*"
    left = [client.pttl(key) for key in client.scan_iter(match=pattern, count=1000)]
    return max((ms for ms in left if ms > 0), default=0) / 1000
