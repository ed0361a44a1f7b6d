#!/usr/bin/env bash
# scripts/stop.sh - stop everything scripts/start.sh started: web, Flower, Celery Beat, both
# workers and, last, the Redis of its own (only when start.sh started one).
#
# usage: scripts/stop.sh [-h]
#
# Everything gets SIGTERM at once: Gunicorn finishes the requests in progress, the Celery workers
# finish their running tasks (warm shutdown). What is still running after PROCTOR_STOP_TIMEOUT_S
# (default 60) seconds is stopped harder (Celery workers: cold shutdown, running tasks go back to
# the queue; then SIGKILL to the whole process group). Redis stops after the workers, so they can
# hand their unfinished messages back. Exits non-zero when something could not be stopped.
# Environment: PROCTOR_STOP_TIMEOUT_S, PROCTOR_RUN_DIR (see scripts/lib.sh).
set -euo pipefail

usage() {
	echo "usage: scripts/stop.sh [-h]"
	echo "Stop web, Flower, Celery Beat, the workers and the Redis started by scripts/start.sh."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rc=0
stop_daemons "$STOP_WEB" "$STOP_FLOWER" "$STOP_BEAT" "$STOP_STATUS" "$STOP_MERGE" || rc=1
if [[ -e "$(pid_file redis)" ]]; then
	if ((rc)); then
		warn "leaving Redis running: something above could not be stopped and may still need it"
	else
		stop_daemons "$STOP_REDIS" || rc=1
		((rc)) || rm -f "$REDIS_URL_STATE"
	fi
fi
((rc == 0)) || die "not everything could be stopped (see above)"
info "all stopped"
