#!/usr/bin/env bash
# scripts/start_celery_beat.sh - start Celery Beat, the scheduler of the periodic tasks
# (status_check_task every 30 s). Run exactly one Beat per installation.
#
# usage: scripts/start_celery_beat.sh [-h]
#
# Log: logs/celery_beat.log. Pid file: run/celery_beat.pid.
# (Its schedule state file is set by celery_config.py: var/celerybeat-schedule.)
# Ready when its log shows "beat: Starting" and the process is still alive.
# Environment: PROCTOR_RUN_DIR, PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S,
# REDIS_URL, DATABASE_URL (see scripts/lib.sh and proctor/config.py).
set -euo pipefail

usage() {
	echo "usage: scripts/start_celery_beat.sh [-h]"
	echo "Start Celery Beat in the background (log logs/celery_beat.log, pid file run/celery_beat.pid)."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_dirs
log="$LOG_DIR/celery_beat.log"
celery="$(tool celery)"

start_daemon celery_beat "$MARK_BEAT" "$log" \
	log_shows "$log" "{offset}" "beat: Starting" -- \
	"$celery" -A "$CELERY_APP" beat \
	--loglevel INFO \
	--logfile "$log"
