#!/usr/bin/env bash
# scripts/stop_celery.sh - stop Celery Beat and the two workers started by the start_celery_*
# scripts (all, or those named).
#
# usage: scripts/stop_celery.sh [-h] [beat|status|merge]...
#
# Each gets SIGTERM: Beat exits, a worker stops taking tasks and finishes the running ones (warm
# shutdown). A worker still busy after PROCTOR_STOP_TIMEOUT_S (default 60) seconds gets SIGQUIT
# (cold shutdown: its running tasks are cancelled and go back to the queue, being acks_late), and
# whatever is left of its process group 30 s later gets SIGKILL, so no pool process or ffmpeg
# survives. Exits non-zero when something could not be stopped.
# Environment: PROCTOR_STOP_TIMEOUT_S, PROCTOR_RUN_DIR (see scripts/lib.sh).
set -euo pipefail

usage() {
	echo "usage: scripts/stop_celery.sh [-h] [beat|status|merge]..."
	echo "Stop Celery Beat and the workers (warm shutdown; killed after PROCTOR_STOP_TIMEOUT_S, default 60 s)."
}
for arg in "$@"; do
	case "$arg" in
	-h | --help) usage; exit 0 ;;
	beat | status | merge) ;;
	*) usage >&2; exit 2 ;;
	esac
done

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($#)) || set -- beat status merge
entries=()
for arg in "$@"; do
	case "$arg" in
	beat) entries+=("$STOP_BEAT") ;;
	status) entries+=("$STOP_STATUS") ;;
	merge) entries+=("$STOP_MERGE") ;;
	esac
done
stop_daemons "${entries[@]}" || die "not everything could be stopped (see above)"
