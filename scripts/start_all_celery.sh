#!/usr/bin/env bash
# scripts/start_all_celery.sh - start Celery Beat, the status_check worker and the video_merge
# worker, in that order (each of scripts/start_celery_beat.sh, start_celery_status_worker.sh and
# start_celery_worker.sh). What already runs is left alone.
#
# usage: scripts/start_all_celery.sh [-h]
#
# Environment: that of the three scripts (PROCTOR_MERGE_CONCURRENCY, PROCTOR_RUN_DIR,
# PROCTOR_LOG_DIR, PROCTOR_DATA_DIR, PROCTOR_START_TIMEOUT_S, REDIS_URL, DATABASE_URL).
set -euo pipefail

usage() {
	echo "usage: scripts/start_all_celery.sh [-h]"
	echo "Start Celery Beat, the status_check worker and the video_merge worker."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
bash "$here/start_celery_beat.sh"
bash "$here/start_celery_status_worker.sh"
bash "$here/start_celery_worker.sh"
