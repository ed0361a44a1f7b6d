#!/usr/bin/env bash
# scripts/start.sh - start everything on this machine with zero configuration (the README's one
# command): web, Celery Beat, the status and merge workers and Flower.
#
# usage: scripts/start.sh [-h]
#
# On a fresh Debian machine it
#   1. installs what is missing (ffmpeg; redis-server unless REDIS_URL is set; python3-venv) with
#      apt-get when run as root, saying what and why before each, else says what to install;
#   2. creates .venv from requirements.txt when missing or outdated (scripts/bootstrap.sh);
#   3. unless REDIS_URL is set, starts a Redis of its own: 127.0.0.1:PROCTOR_REDIS_PORT, append-only
#      persistence in var/redis, pid file run/redis.pid, log logs/redis.log; its URL is exported
#      as REDIS_URL to everything started here and kept in run/redis_url for the other scripts;
#   4. runs the database migrations (alembic upgrade head; DATABASE_URL defaults to a SQLite file
#      in the data directory);
#   5. starts web, Beat, status worker, merge worker and Flower (scripts/start_*.sh), each checked
#      to be alive and answering;
#   6. prints the health and console URLs, where the admin token is, the Flower credentials and
#      where the README's "Quick start" walks through an exam with curl.
# Running it again starts only what is not running. scripts/stop.sh stops it all. When a step
# fails, what this run started (its Redis included) is stopped again before it exits non-zero;
# what was already running is left alone.
#
# Environment (all optional):
#   PROCTOR_REDIS_PORT  port of the Redis started here (default 6380, so as not to clash with a
#                       system Redis on 6379)
#   REDIS_URL           use this Redis instead of starting one
#   DATABASE_URL        database (default: SQLite file var/proctor.db)
#   PROCTOR_DATA_DIR, PROCTOR_LOG_DIR, PROCTOR_RUN_DIR, PROCTOR_BIND, PROCTOR_WEB_WORKERS,
#   PROCTOR_WEB_THREADS, PROCTOR_MERGE_CONCURRENCY, PROCTOR_FLOWER_ADDRESS, PROCTOR_FLOWER_PORT,
#   PROCTOR_FLOWER_USER, PROCTOR_FLOWER_PASSWORD, PROCTOR_FLOWER_URL_PREFIX, PROCTOR_ADMIN_TOKEN,
#   PROCTOR_START_TIMEOUT_S: see the scripts they belong to and the README.
set -euo pipefail

usage() {
	echo "usage: scripts/start.sh [-h]"
	echo "Install what is missing, then start Redis (unless REDIS_URL is set), web, Celery Beat,"
	echo "the workers and Flower; scripts/stop.sh stops them."
}
case "${1:-}" in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bootstrap.sh
source "$SCRIPT_DIR/bootstrap.sh"

own_redis=0
[[ -n "$REDIS_URL_GIVEN" ]] || own_redis=1
redis_port="$(positive_int PROCTOR_REDIS_PORT "$REDIS_PORT")"

# --- undo on failure -----------------------------------------------------------------------------
# A half-started stack is worse than none: its Redis would be adopted by the next start and by the
# other scripts. So every component this run starts is noted, and a failed run stops them again.
started_here=()  # stop_daemons entries (NAME:MARKER[:cold]) of what this run started

# start_component ENTRY CMD...: run CMD, which starts the component of ENTRY (one of the STOP_*
# entries of lib.sh); when it was not running before, note ENTRY so that a failure, of CMD or of a
# later step, stops it again.
start_component() {
	local entry="$1" name marker
	shift
	IFS=: read -r name marker _ <<<"$entry"
	running_pid "$name" "$marker" >/dev/null || started_here+=("$entry")
	"$@"
}

stop_what_this_run_started() {
	local rc=$? entry name
	trap - EXIT
	local -a services=() redis=()
	for entry in "${started_here[@]}"; do
		name="${entry%%:*}"
		[[ -e "$(pid_file "$name")" ]] || continue # never got as far as starting
		if [[ "$name" == redis ]]; then redis=("$entry"); else services+=("$entry"); fi
	done
	if ((rc != 0)) && ((${#services[@]} + ${#redis[@]})); then
		warn "start failed: stopping what this run started"
		local stopped=1
		((${#services[@]} == 0)) || stop_daemons "${services[@]}" || stopped=0
		# Redis last, so the workers can hand their unfinished messages back.
		if ((${#redis[@]})); then
			if ((stopped)) && stop_daemons "${redis[@]}"; then
				rm -f "$REDIS_URL_STATE"
			else
				warn "Redis left running: scripts/stop.sh stops it"
			fi
		fi
	fi
	exit "$rc"
}
trap stop_what_this_run_started EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. system packages --------------------------------------------------------------------------
packages=(python3)
if [[ -n "${PROCTOR_FFMPEG:-}" ]]; then
	command -v "$PROCTOR_FFMPEG" >/dev/null || die "PROCTOR_FFMPEG=$PROCTOR_FFMPEG not found"
else
	packages+=(ffmpeg)
fi
((own_redis)) && packages+=(redis-server)
ensure_packages "${packages[@]}" || die "missing system packages (see above)"

if [[ ! -x "$VENV_DIR/bin/python" ]] && ! python3 -c 'import ensurepip' 2>/dev/null; then
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		apt_install python3-venv || die "apt-get install python3-venv failed (see above)"
	else
		die "python3 cannot create virtualenvs; please install python3-venv (e.g. sudo apt-get install python3-venv)"
	fi
fi

# --- 2. virtualenv -------------------------------------------------------------------------------
ensure_venv || die "could not set up .venv from requirements.txt (see above)"

ensure_dirs
# Metrics files of a previous run would be summed with the new ones: start from none, unless
# processes that write them are still running.
if ! running_pid web "$MARK_WEB" >/dev/null && ! running_pid celery_worker_merge "$MARK_MERGE" >/dev/null; then
	rm -rf "${PROM_DIR:?}"
	mkdir -p "$PROM_DIR"
fi

# --- 3. Redis ------------------------------------------------------------------------------------
if ((own_redis)); then
	redis_dir="$DATA_DIR/redis"
	mkdir -p "$redis_dir"
	if pid="$(running_pid redis "$MARK_REDIS")"; then
		# Adopted only when it keeps its data where this run would: another data directory means
		# another installation's queue (or PROCTOR_DATA_DIR changed since it started).
		have="$(redis_data_dir "$pid")" || die "cannot tell where the running Redis (pid $pid) keeps its data; run scripts/stop.sh first"
		want="$(cd "$redis_dir" && pwd -P)"
		[[ "$have" == "$want" ]] ||
			die "the Redis started earlier (pid $pid) keeps its data in $have, not in $want (PROCTOR_DATA_DIR changed?); run scripts/stop.sh first"
	elif tcp_redis_ping 127.0.0.1 "$redis_port"; then
		die "another Redis already answers on 127.0.0.1:$redis_port; set PROCTOR_REDIS_PORT to a free port, or REDIS_URL to use that Redis"
	fi
	start_component "$STOP_REDIS" \
		start_daemon redis "$MARK_REDIS" "$LOG_DIR/redis.log" \
		tcp_redis_ping 127.0.0.1 "$redis_port" -- \
		"$(command -v redis-server)" \
		--bind 127.0.0.1 --port "$redis_port" --protected-mode yes \
		--dir "$redis_dir" --appendonly yes --appendfsync everysec \
		--daemonize no --logfile ""
	tcp_redis_ping 127.0.0.1 "$redis_port" ||
		die "the Redis started earlier does not listen on port $redis_port (PROCTOR_REDIS_PORT changed?); run scripts/stop.sh first"
	REDIS_URL="redis://127.0.0.1:$redis_port/0"
	export REDIS_URL
	printf '%s\n' "$REDIS_URL" >"$REDIS_URL_STATE"
else
	"$(python_bin)" -c '
import os, redis
redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=5, socket_timeout=5).ping()
' 2>/dev/null || die "no Redis answers at REDIS_URL=$(url_display "$REDIS_URL")"
	info "using the Redis at $(url_display "$REDIS_URL")"
fi

# --- 4. database migrations ----------------------------------------------------------------------
[[ -f "$PROCTOR_ROOT/alembic.ini" ]] || die "alembic.ini not found in $PROCTOR_ROOT"
info "database migrations: alembic upgrade head"
"$(tool alembic)" -c "$PROCTOR_ROOT/alembic.ini" upgrade head ||
	die "database migrations failed (DATABASE_URL=$(url_display "${DATABASE_URL:-sqlite (default)}"))"

# --- 5. the services -----------------------------------------------------------------------------
start_component "$STOP_WEB" bash "$SCRIPT_DIR/start_web.sh" || die "start_web.sh failed (see above)"
start_component "$STOP_BEAT" bash "$SCRIPT_DIR/start_celery_beat.sh" || die "start_celery_beat.sh failed (see above)"
start_component "$STOP_STATUS" bash "$SCRIPT_DIR/start_celery_status_worker.sh" ||
	die "start_celery_status_worker.sh failed (see above)"
start_component "$STOP_MERGE" bash "$SCRIPT_DIR/start_celery_worker.sh" || die "start_celery_worker.sh failed (see above)"
start_component "$STOP_FLOWER" bash "$SCRIPT_DIR/start_flower.sh" || die "start_flower.sh failed (see above)"

# --- 6. where things are -------------------------------------------------------------------------
# The health URL (/health answers anybody: it needs no token) and the console at /.
bind="${PROCTOR_BIND:-127.0.0.1:8000}"
first="${bind%%,*}"
first="${first// /}"
case "$first" in
unix:*) web_url="curl --unix-socket ${first#unix:} http://localhost/health" ;;
0.0.0.0:*) web_url="http://127.0.0.1:${first##*:}/health  (listening on all interfaces)" ;;
"[::]:"*) web_url="http://[::1]:${first##*:}/health  (listening on all interfaces)" ;;
*:*) web_url="http://$first/health" ;;
*) web_url="http://$first:8000/health" ;;
esac
console_url="${web_url/\/health/\/}"
if [[ -n "${PROCTOR_ADMIN_TOKEN:-}" ]]; then
	token_where="the value of PROCTOR_ADMIN_TOKEN"
else
	token_where="$(rel_path "$DATA_DIR/admin_token")  (show it: cat $(rel_path "$DATA_DIR/admin_token"))"
fi
flower_host="${PROCTOR_FLOWER_ADDRESS:-127.0.0.1}"
flower_prefix="${PROCTOR_FLOWER_URL_PREFIX:-}"
flower_prefix="${flower_prefix#/}"
flower_url="http://$flower_host:${PROCTOR_FLOWER_PORT:-5555}/${flower_prefix:+${flower_prefix%/}/}"
if [[ -n "${PROCTOR_FLOWER_PASSWORD:-}" ]]; then
	flower_password="the value of PROCTOR_FLOWER_PASSWORD"
else
	flower_password="in $(rel_path "$DATA_DIR/flower_password")  (show it: cat $(rel_path "$DATA_DIR/flower_password"))"
fi

cat <<SUMMARY

proctor is running.
  health         $web_url
  console        $console_url
                 first account: .venv/bin/python -m proctor.cli create-admin NAME
  try it         README.md, "Quick start": an exam with curl, from join to the merged recording
  admin token    $token_where
  Flower         $flower_url
                 user ${PROCTOR_FLOWER_USER:-admin}, password $flower_password
  Redis          $(url_display "$REDIS_URL")$( ((own_redis)) && printf '  (own, data in %s)' "$(rel_path "$DATA_DIR/redis")")
  logs           $(rel_path "$LOG_DIR")/
  stop           scripts/stop.sh
SUMMARY
