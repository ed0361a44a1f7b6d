"""The token API as one student's client speaks it: join (and rejoin with a new token), calls that
retry with exponential backoff and jitter, Retry-After honoured on 429 and 503.

The token lives only in this object's memory: a client started again after a crash joins again
(the server then revokes the old token). A 401 on any call means the token was revoked (another
join of this session): the client joins again, once, whichever thread saw it first.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

from .report import Stats

# Waits between attempts: base * 2^attempt, at most CAP, each with up to half of it at random on
# top, so that a hall of clients cut off together does not come back in step.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
TIMEOUT_S = (5, 60)  # connect, read


class Refused(Exception):
    """The server refused for good (a 4xx other than a retryable one): retrying would not help."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class Unreachable(Exception):
    """No answer: connection refused or cut, a timeout, or a simulated network drop."""


class Offline(Unreachable):
    """A simulated network drop: nothing was sent."""


def unreachable_kind(err: Unreachable) -> str:
    return "offline_simulated" if isinstance(err, Offline) else "unreachable"


def backoff_s(attempt: int) -> float:
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt, 16))
    return delay + random.uniform(0, delay / 2)


def retry_after_s(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def error_of(response: requests.Response) -> tuple[str, str]:
    """The API's (code, message), or the status as the code when the body is not the API's."""
    try:
        body = response.json()["error"]
        return str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


@dataclass
class Proof:
    """What the student shows at join: an entry code with their id, or an invitation code."""

    student_id: str
    entry_code: str = ""
    invitation_code: str = ""

    def body(self) -> dict:
        if self.invitation_code:
            return {"invitation_code": self.invitation_code}
        return {"student_id": self.student_id, "entry_code": self.entry_code}


@dataclass
class Joined:
    session_id: int
    token: str
    heartbeat_interval_s: float
    next_seq: int


@dataclass
class Connection:
    base: str
    exam_id: int
    proof: Proof
    stats: Stats
    wait: Callable[[float], None]  # sleeps, or raises when the client must stop at once
    on_error: Callable[[str, str], None]  # (kind, message): shown to the person
    joined: Joined | None = None
    offline_until: float = 0.0  # a simulated network drop lasts until then (time.monotonic)
    _join_lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    # --- one attempt --------------------------------------------------------------------------

    def send(self, method: str, path: str, *, authorized: bool = True, **kw) -> requests.Response:
        if time.monotonic() < self.offline_until:
            raise Offline("offline (simulated network drop)")
        if not hasattr(self._local, "http"):  # a requests.Session per thread: they are not shared safely
            self._local.http = requests.Session()
        headers = dict(kw.pop("headers", None) or {})
        if authorized and self.joined:
            headers["Authorization"] = f"Bearer {self.joined.token}"
        try:
            return self._local.http.request(method, self.base + path, headers=headers, timeout=TIMEOUT_S, **kw)
        except requests.RequestException as err:
            raise Unreachable(type(err).__name__) from err

    # --- with retries -------------------------------------------------------------------------

    def call(self, kind: str, method: str, path: str, ok: tuple[int, ...], rewind=None, **kw) -> requests.Response:
        """Send until an answer in ``ok`` (returned) or a refusal for good (``Refused``).
        ``rewind()`` is called before each attempt (a file body read by the last one)."""
        attempt = 0
        while True:
            seen = self.joined
            if rewind:
                rewind()
            began = time.monotonic()
            try:
                r = self.send(method, path, **kw)
            except Unreachable as err:
                if not isinstance(err, Offline):
                    self.stats.attempt(kind)
                self._failed(kind, unreachable_kind(err), str(err))
                self.wait(backoff_s(attempt))
                attempt += 1
                continue
            self.stats.attempt(kind)
            if r.status_code in ok:
                self.stats.latency(kind, time.monotonic() - began)
                return r
            code, message = error_of(r)
            if r.status_code == 401 and seen is not None:
                self._failed(kind, "token_revoked", message)
                self.rejoin(seen)
                continue
            if r.status_code not in RETRY_STATUSES:
                self._failed(kind, code, message)
                raise Refused(r.status_code, code, message)
            self._failed(kind, code, message)
            self.wait(retry_after_s(r) or backoff_s(attempt))
            attempt += 1

    def _failed(self, kind: str, code: str, message: str) -> None:
        self.stats.error(code)
        self.on_error(code, f"{kind}: {code} {message}".strip())

    # --- joining ------------------------------------------------------------------------------

    def join(self) -> Joined:
        """Join (again), waiting as the server says while the session still counts as online
        (a crashed client's session stays online until its heartbeats are missed long enough)."""
        attempt = 0
        path = f"/api/exams/{self.exam_id}/join"
        while True:
            try:
                r = self.send("POST", path, authorized=False, json=self.proof.body())
            except Unreachable as err:
                self._failed("join", unreachable_kind(err), str(err))
                self.wait(backoff_s(attempt))
                attempt += 1
                continue
            if r.status_code == 201:
                body = r.json()
                self.joined = Joined(body["session_id"], body["token"], float(body["heartbeat_interval_s"]),
                                     int(body["next_seq"]))
                return self.joined
            code, message = error_of(r)
            self._failed("join", code, message)
            if r.status_code in RETRY_STATUSES or code == "session_in_use":
                self.wait(retry_after_s(r) or backoff_s(attempt))
                attempt += 1
                continue
            raise Refused(r.status_code, code, message)

    def rejoin(self, seen: Joined | None) -> None:
        """Join again unless another thread already did since ``seen`` was the current join."""
        with self._join_lock:
            if self.joined is seen:
                self.join()

    @property
    def session_id(self) -> int:
        return self.joined.session_id
