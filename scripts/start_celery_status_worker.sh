#!/usr/bin/env bash
# scripts/start_celery_status_worker.sh - start the Celery worker of the status_check queue
# (exam and student status checks triggered by Beat), concurrency 1, node name status@<host>.
#
# usage: scripts/start_celery_status_worker.sh [-h]
#
# Log: logs/celery_worker_status.log. Pid file: run/celery_worker_status.pid.
# Ready when `celery -A celery_config.celery_app inspect ping -d status@<host>` gets an answer.
# Environment: PROCTOR_RUN_DIR, PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S,
# REDIS_URL, DATABASE_URL (see scripts/lib.sh and proctor/config.py).
set -euo pipefail

usage() {
	echo "usage: scripts/start_celery_status_worker.sh [-h]"
	echo "Start the status_check worker in the background (log logs/celery_worker_status.log)."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_dirs
start_celery_worker celery_worker_status "$MARK_STATUS" "$STATUS_NODE" status_check 1 \
	"$LOG_DIR/celery_worker_status.log"
