"""Gunicorn's worker and logger classes for the web app: slow clients hold nothing, log lines
cannot be forged.

Loaded by Gunicorn's master from ``gunicorn_config.py``, before any worker exists, so this module
imports no application code (no Flask, no database, no Redis): only Gunicorn, gevent and the
standard library.

**The worker.** ``PacedGeventWorker`` is Gunicorn's gevent worker (one greenlet per connection,
so a thousand idle sockets cost memory, not the request threads every other student needs) with
two bounds on what one client can hold:

- every read and write on a client socket waits at most ``read_timeout_s`` (a client that sends
  its headers and then nothing is cut after that; the headers themselves must arrive within
  Gunicorn's ``keepalive`` seconds, which the gevent worker enforces);
- a request body must arrive at ``min_body_rate`` bytes a second on average, after a grace of
  ``read_timeout_s``: a client trickling one byte a second is cut, however long its upload.

A cut client's body simply ends: the application sees a body shorter than its Content-Length and
refuses it as incomplete (storing nothing), exactly as when a client dies mid-upload, and the
connection is closed after the answer.

**The logger.** ``EscapingLogger`` writes every request value in the access log escaped (control
characters, non-ASCII bytes, backslashes and double quotes), so a path with ``%0D%0A`` or a NUL
stays on its own line and inside its quotes; its error log, and the app's log lines through
``EscapingFormatter``, escape control characters in messages and indent continuation lines of
tracebacks, so no line an attacker's input produced can pass for a record of its own.
"""
from __future__ import annotations

import logging
import re
import resource
import time

from gevent import socket as green_socket
from gunicorn import glogging
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

# --- escaping ------------------------------------------------------------------------------------

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
# Access-log values are WSGI strings: each character is one byte of the request (latin-1), so
# everything outside printable ASCII is shown as the byte it was.
_ACCESS_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def _escape_char(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def access_value(value: str) -> str:
    """``value`` as printable ASCII with no double quote or lone backslash left in it."""
    return _ACCESS_UNSAFE.sub(lambda m: _escape_char(m.group()), value)


def printable(text: str) -> str:
    """``text`` with every non-printable character (line breaks, NUL, terminal escapes, bidi
    controls) escaped; printable text, accents included, is left alone."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


class EscapingFormatter(logging.Formatter):
    """A formatter whose records each start one line: the message is escaped, and the lines of a
    traceback (whose last line repeats the exception's message, maybe request data) are escaped
    and indented, so no line of it starts where a record would."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        original = record.message
        record.message = printable(original)
        try:
            return super().formatMessage(record)
        finally:
            record.message = original

    def formatException(self, ei) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + printable(line) for line in text.splitlines())


class EscapedAtoms(glogging.SafeAtoms):
    """Gunicorn's access-log atoms with every string escaped (Gunicorn's own escapes only ``"``,
    leaving line breaks, NULs and a trailing backslash that swallows the closing quote).

    Escaped when read: Gunicorn offers every request header, response header and environ value
    as an atom, the format uses a handful, and escaping them all was a tenth of a heartbeat's time."""

    def __init__(self, atoms: dict):  # not SafeAtoms.__init__: it would escape quotes twice
        dict.__init__(self, atoms)

    def __getitem__(self, key: str):
        value = super().__getitem__(key)
        return access_value(value) if isinstance(value, str) else value


class EscapingLogger(glogging.Logger):
    """Gunicorn's logger with escaped access-log values and escaping error-log formatters."""

    atoms_wrapper_class = EscapedAtoms

    def _set_handler(self, log, output, fmt, stream=None):
        super()._set_handler(log, output, EscapingFormatter(fmt._fmt, fmt.datefmt), stream)


# --- the worker ----------------------------------------------------------------------------------


class _PacedSocket(green_socket.socket):
    """A client socket whose reads wait at most ``read_timeout_s`` and, while a request body is
    read, also no longer than the body's minimum rate allows; once either runs out the socket
    reads as closed (the body ends short) for the rest of the connection."""

    def bound(self, read_timeout_s: float) -> None:
        self.read_timeout_s = read_timeout_s
        self.body_deadline_base: float | None = None
        self.min_body_rate = 0
        self.body_received = 0
        self.cut = False
        self.settimeout(read_timeout_s)

    def pace_body(self, min_body_rate: int) -> None:
        self.body_deadline_base = time.monotonic() + self.read_timeout_s
        self.min_body_rate = min_body_rate
        self.body_received = 0

    def stop_pacing(self) -> None:
        self.body_deadline_base = None

    def _wait_allowed(self) -> float:
        if self.body_deadline_base is None or not self.min_body_rate:
            return self.read_timeout_s
        due = self.body_deadline_base + self.body_received / self.min_body_rate
        return min(self.read_timeout_s, due - time.monotonic())

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.cut:
            return b""
        wait = self._wait_allowed()
        if wait <= 0:
            self.cut = True
            return b""
        self.settimeout(wait)
        try:
            data = super().recv(bufsize, flags)
        except TimeoutError:
            self.cut = True
            return b""
        finally:
            self.settimeout(self.read_timeout_s)
        self.body_received += len(data)
        return data


class PacedGeventWorker(GeventWorker):
    """Gunicorn's gevent worker with bounded reads and a minimum body rate (see the module
    docstring); ``gunicorn_config.py`` sets the bounds with ``pace_clients``."""

    read_timeout_s = 30
    min_body_rate = 1024

    def init_process(self):
        _allow_open_files(self.worker_connections + 256)
        super().init_process()

    def handle(self, listener, client, addr):
        paced = _PacedSocket(client.family, client.type, client.proto, fileno=client.detach())
        paced.bound(self.read_timeout_s)
        # GeventWorker.handle would make the socket blocking without a timeout: skip to its parent.
        AsyncWorker.handle(self, listener, paced, addr)

    def handle_request(self, listener_name, req, sock, addr):
        sock.pace_body(self.min_body_rate)
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.stop_pacing()


def pace_clients(read_timeout_s: int, min_body_rate: int) -> None:
    """Set the bounds of the workers forked from now on (0 for ``min_body_rate``: no rate)."""
    PacedGeventWorker.read_timeout_s = read_timeout_s
    PacedGeventWorker.min_body_rate = min_body_rate


def _allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit of open files towards ``wanted`` (up to the hard limit):
    each connection is a file, and a soft limit of 1,024 would refuse connections long before the
    worker's connection limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
