#!/usr/bin/env bash
# scripts/start_flower.sh - start Flower, the Celery monitor:
# `celery -A celery_config.celery_app flower --conf=scripts/flowerconfig.py`.
#
# usage: scripts/start_flower.sh [-h]
#
# Log: logs/flower.log. Pid file: run/flower.pid. Ready when it answers HTTP on its port.
# Always behind HTTP basic auth; the password is passed in the environment, never on the command
# line. Flower runs without PROMETHEUS_MULTIPROC_DIR: it counts its own flower_* metrics (served at
# its own /metrics), which must not end up in the directory the web app's /metrics aggregates.
#
# Environment:
#   PROCTOR_FLOWER_ADDRESS     address to listen on (default 127.0.0.1: loopback only)
#   PROCTOR_FLOWER_PORT        port (default 5555)
#   PROCTOR_FLOWER_USER        basic-auth user (default admin)
#   PROCTOR_FLOWER_PASSWORD    basic-auth password (default: generated once into
#                              var/flower_password, mode 0600)
#   PROCTOR_FLOWER_URL_PREFIX  path prefix behind a proxy, e.g. "flower" (default: none)
#   and PROCTOR_RUN_DIR, PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S, REDIS_URL.
set -euo pipefail

usage() {
	echo "usage: scripts/start_flower.sh [-h]"
	echo "Start Flower in the background (http://127.0.0.1:5555/, user admin, password in var/flower_password)."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

address="${PROCTOR_FLOWER_ADDRESS:-127.0.0.1}"
port="$(positive_int PROCTOR_FLOWER_PORT "${PROCTOR_FLOWER_PORT:-5555}")"
user="${PROCTOR_FLOWER_USER:-admin}"
[[ "$user" != *:* ]] || die "PROCTOR_FLOWER_USER must not contain ':'"
case "$address" in
"" | 0.0.0.0) probe_host=127.0.0.1 ;;
:: | "[::]") probe_host="[::1]" ;;
*:*) probe_host="[$address]" ;;
*) probe_host="$address" ;;
esac
probe_url="http://$probe_host:$port/"

if pid="$(running_pid flower "$MARK_FLOWER")"; then
	info "flower is already running (pid $pid)"
	exit 0
fi
if http_answers "$probe_url"; then
	die "something else already answers at $probe_url; stop it or set PROCTOR_FLOWER_PORT"
fi

ensure_dirs
if [[ -z "${PROCTOR_FLOWER_PASSWORD:-}" ]]; then
	write_secret_file "$DATA_DIR/flower_password"
	PROCTOR_FLOWER_PASSWORD="$(head -n 1 "$DATA_DIR/flower_password")"
fi
export PROCTOR_FLOWER_ADDRESS="$address" PROCTOR_FLOWER_PORT="$port" PROCTOR_FLOWER_USER="$user"
export PROCTOR_FLOWER_PASSWORD PROCTOR_FLOWER_URL_PREFIX="${PROCTOR_FLOWER_URL_PREFIX:-}"
celery="$(tool celery)"
# lib.sh exported it for the web app and the merge worker; Flower's own metrics stay its own.
unset PROMETHEUS_MULTIPROC_DIR

start_daemon flower "$MARK_FLOWER" "$LOG_DIR/flower.log" \
	http_answers "$probe_url" -- \
	"$celery" -A "$CELERY_APP" flower --conf="$SCRIPT_DIR/flowerconfig.py"
