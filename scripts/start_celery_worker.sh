#!/usr/bin/env bash
# scripts/start_celery_worker.sh - start the Celery worker of the video_merge queue (FFmpeg merges
# of the recorded segments), node name merge@<host>.
#
# usage: scripts/start_celery_worker.sh [-h]
#
# Log: logs/celery_worker_merge.log. Pid file: run/celery_worker_merge.pid.
# Ready when `celery -A celery_config.celery_app inspect ping -d merge@<host>` gets an answer.
#
# Environment:
#   PROCTOR_MERGE_CONCURRENCY  merges run at the same time (worker processes; default 2). Merges
#                              are CPU-bound: at most the number of cores.
#   and PROCTOR_RUN_DIR, PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S, REDIS_URL,
#   DATABASE_URL (see scripts/lib.sh and proctor/config.py).
set -euo pipefail

usage() {
	echo "usage: scripts/start_celery_worker.sh [-h]"
	echo "Start the video_merge worker in the background (log logs/celery_worker_merge.log);"
	echo "PROCTOR_MERGE_CONCURRENCY sets the number of parallel merges (default 2)."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

concurrency="$(positive_int PROCTOR_MERGE_CONCURRENCY "${PROCTOR_MERGE_CONCURRENCY:-2}")"
ensure_dirs
prune_metrics
start_celery_worker celery_worker_merge "$MARK_MERGE" "$MERGE_NODE" video_merge "$concurrency" \
	"$LOG_DIR/celery_worker_merge.log"
