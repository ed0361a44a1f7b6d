"""Gunicorn settings of the proctor web app: ``gunicorn -c gunicorn_config.py server:app``.

Used by scripts/start_web.sh and systemd/proctor-web.service. Every value can be changed from the
environment; gunicorn's own ``GUNICORN_CMD_ARGS`` (e.g. ``"--access-logfile -"``) overrides anything
set here.

  PROCTOR_BIND              where to listen (default 127.0.0.1:8000); several addresses separated
                            by commas; ``unix:/path`` for a unix socket behind a proxy
  PROCTOR_WEB_WORKERS       worker processes (default 2)
  PROCTOR_WEB_WORKER_CLASS  gunicorn worker class (default proctor.serving.PacedGeventWorker;
                            ``gthread`` for the former threaded workers)
  PROCTOR_WEB_CONNECTIONS   connections a worker holds at once (default 1000)
  PROCTOR_WEB_READ_TIMEOUT_S  longest wait for one read or write on a client socket (default 30)
  PROCTOR_WEB_MIN_BODY_RATE bytes a second a request body must average after the first
                            PROCTOR_WEB_READ_TIMEOUT_S seconds (default 1024; 0: no minimum)
  PROCTOR_WEB_THREADS       threads per worker with ``gthread`` (default 8)
  PROCTOR_LOG_DIR           gunicorn_access.log and gunicorn_error.log go there (default logs)
  PROCTOR_RUN_DIR           the control socket gunicorn.ctl goes there (default run)
  PROMETHEUS_MULTIPROC_DIR  when set (the start scripts and the systemd unit set it), the metrics
                            files of each exited worker are marked dead

Uploads from exam halls are slow clients, and anyone can open connections and send nothing. A
thread per connection (gthread: 2 x 8 threads) is a budget 16 such connections exhaust, so the
default worker is gevent's, one greenlet per connection (bench/slow_clients.py measures both), with
bounded reads and a minimum body rate so that no client holds a connection for ever
(proctor/serving.py). The worker timeout (300 s) and the graceful stop (120 s) leave room for a
64 MiB segment over a slow link. Behind a buffering proxy (nginx with ``proxy_request_buffering
on``) the proxy absorbs slow uploads as well.
"""
from __future__ import annotations

from pathlib import Path

from proctor import serving
from proctor.config import ROOT, Env

_env = Env()
_log_dir = _env.path("PROCTOR_LOG_DIR", ROOT / "logs")
_run_dir = _env.path("PROCTOR_RUN_DIR", ROOT / "run")

# --- server socket and workers -------------------------------------------------------------------
bind = [b.strip() for b in _env.text("PROCTOR_BIND", "127.0.0.1:8000").split(",") if b.strip()]
workers = _env.integer("PROCTOR_WEB_WORKERS", 2, minimum=1)
worker_class = _env.text("PROCTOR_WEB_WORKER_CLASS", "proctor.serving.PacedGeventWorker")
worker_connections = _env.integer("PROCTOR_WEB_CONNECTIONS", 1000, minimum=1)
serving.pace_clients(
    read_timeout_s=_env.integer("PROCTOR_WEB_READ_TIMEOUT_S", 30, minimum=1),
    min_body_rate=_env.integer("PROCTOR_WEB_MIN_BODY_RATE", 1024, minimum=0),
)
threads = _env.integer("PROCTOR_WEB_THREADS", 8, minimum=1)
timeout = 300
graceful_timeout = 120
keepalive = 5
# Recycle workers now and then (staggered by the jitter, so both never restart together) so a slow
# leak cannot grow without bound. Rarely: a recycled worker re-imports the whole app (a second or
# two of CPU in which it serves nothing) and drops its idle keep-alive connections, and a seat that
# sends on one of those at that moment sees its call fail. With two workers at a burst of 1,000
# calls a second this is a restart per worker every three minutes or so, at a 3,000-seat hall's
# pace (about 200 calls a second) every quarter of an hour; a worker's memory stays flat over
# gigabytes of uploads (bench/results.md), so nothing needs it sooner.
max_requests = 100000
max_requests_jitter = 10000
# Each worker imports the app itself after the fork: no database engine or Redis connection is
# shared across processes.
preload_app = False
reload = False
proc_name = "proctor-web"

# --- logging -------------------------------------------------------------------------------------
try:
    _log_dir.mkdir(parents=True, exist_ok=True)
except OSError:
    pass  # gunicorn reports the unwritable log file itself
accesslog = str(_log_dir / "gunicorn_access.log")
errorlog = str(_log_dir / "gunicorn_error.log")
loglevel = "info"
# Request values (path, user agent, headers) escaped: a CR LF or NUL in them cannot start a line.
logger_class = "proctor.serving.EscapingLogger"
# The path without its query string (a token sent there by mistake must not reach a log file),
# the request id the app puts on every response (and on its own log lines), and the time taken.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s "%(a)s"'

# --- control socket (gunicornc) ------------------------------------------------------------------
# Per installation rather than gunicorn's default ~/.gunicorn/gunicorn.ctl, which two instances of
# the same user would share. Unix socket paths are limited to 107 bytes.
_ctl = _run_dir / "gunicorn.ctl"
if len(str(_ctl)) < 100:
    control_socket = str(_ctl)
else:
    control_socket_disable = True

# --- Prometheus multiprocess mode ----------------------------------------------------------------
_prom_dir = _env.text("PROMETHEUS_MULTIPROC_DIR", "")
if _prom_dir:
    Path(_prom_dir).mkdir(parents=True, exist_ok=True)

    def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
        """Mark the exited worker's metrics files dead so its live gauges stop counting."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
