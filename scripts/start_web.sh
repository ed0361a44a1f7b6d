#!/usr/bin/env bash
# scripts/start_web.sh - start the web application: Gunicorn with gunicorn_config.py, app server:app.
#
# usage: scripts/start_web.sh [-h]
#
# Logs: logs/gunicorn_error.log (also Gunicorn's own output) and logs/gunicorn_access.log.
# Pid file: run/web.pid. Prometheus multiprocess files: run/prometheus (emptied at each start).
# Ready when GET /health answers (any status: 503 only means a dependency is down).
#
# Environment:
#   PROCTOR_BIND              where to listen (default 127.0.0.1:8000; see gunicorn_config.py)
#   PROCTOR_WEB_WORKERS       worker processes (default 2)
#   PROCTOR_WEB_WORKER_CLASS  gunicorn worker class (default proctor.serving.PacedGeventWorker)
#   PROCTOR_WEB_CONNECTIONS, PROCTOR_WEB_READ_TIMEOUT_S, PROCTOR_WEB_MIN_BODY_RATE
#                             what slow and idle clients may hold (see gunicorn_config.py)
#   PROCTOR_WEB_THREADS       threads per worker with PROCTOR_WEB_WORKER_CLASS=gthread (default 8)
#   and PROCTOR_RUN_DIR, PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S, REDIS_URL,
#   DATABASE_URL, PROCTOR_ADMIN_TOKEN (see scripts/lib.sh and proctor/config.py).
set -euo pipefail

usage() {
	echo "usage: scripts/start_web.sh [-h]"
	echo "Start Gunicorn (gunicorn_config.py, server:app) in the background; PROCTOR_BIND sets the address."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The first address of PROCTOR_BIND gives the ready check.
bind="${PROCTOR_BIND:-127.0.0.1:8000}"
first="${bind%%,*}"
first="${first// /}"
case "$first" in
unix:*)
	health=(http_answers_unix "${first#unix:}" /health)
	url="unix:${first#unix:} (http://localhost/health)"
	;;
*)
	host="${first%:*}"
	port="${first##*:}"
	if [[ "$host" == "$first" ]]; then # no port given: gunicorn's default
		host="$first"
		port=8000
	fi
	case "$host" in
	"" | 0.0.0.0) host=127.0.0.1 ;;
	"[::]") host="[::1]" ;;
	esac
	url="http://$host:$port/health"
	health=(http_answers "$url")
	;;
esac

if pid="$(running_pid web "$MARK_WEB")"; then
	info "web is already running (pid $pid)"
	exit 0
fi
if [[ "$first" != unix:* ]] && "${health[@]}"; then
	die "something else already answers at $url; stop it or set PROCTOR_BIND"
fi

ensure_dirs
prune_metrics
gunicorn="$(tool gunicorn)"

start_daemon web "$MARK_WEB" "$LOG_DIR/gunicorn_error.log" \
	"${health[@]}" -- \
	"$gunicorn" --config "$PROCTOR_ROOT/gunicorn_config.py" server:app
