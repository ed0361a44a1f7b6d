#!/usr/bin/env bash
# scripts/start.sh - start everything on this machine with zero configuration (the README's one
# command): web, Celery Beat, the status and merge workers and Flower.
#
# usage: scripts/start.sh [-h]
#
# On a fresh Debian machine it
#   1. installs what is missing (ffmpeg; redis-server unless REDIS_URL is set; python3-venv) with
#      apt-get when run as root, else says what to install;
#   2. creates .venv from requirements.txt when missing or outdated (scripts/bootstrap.sh);
#   3. unless REDIS_URL is set, starts a Redis of its own: 127.0.0.1:PROCTOR_REDIS_PORT, append-only
#      persistence in var/redis, pid file run/redis.pid, log logs/redis.log; its URL is exported
#      as REDIS_URL to everything started here and kept in run/redis_url for the other scripts;
#   4. runs the database migrations (alembic upgrade head; DATABASE_URL defaults to a SQLite file
#      in the data directory);
#   5. starts web, Beat, status worker, merge worker and Flower (scripts/start_*.sh), each checked
#      to be alive and answering;
#   6. prints the URL, where the admin token is and the Flower credentials.
# Running it again starts only what is not running. scripts/stop.sh stops it all.
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
		info "installing python3-venv with apt-get"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null ||
			die "apt-get install python3-venv failed"
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
	rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"
	mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

# --- 3. Redis ------------------------------------------------------------------------------------
if ((own_redis)); then
	if ! running_pid redis "$MARK_REDIS" >/dev/null && tcp_redis_ping 127.0.0.1 "$redis_port"; then
		die "another Redis already answers on 127.0.0.1:$redis_port; set PROCTOR_REDIS_PORT to a free port, or REDIS_URL to use that Redis"
	fi
	mkdir -p "$DATA_DIR/redis"
	start_daemon redis "$MARK_REDIS" "$LOG_DIR/redis.log" \
		tcp_redis_ping 127.0.0.1 "$redis_port" -- \
		"$(command -v redis-server)" \
		--bind 127.0.0.1 --port "$redis_port" --protected-mode yes \
		--dir "$DATA_DIR/redis" --appendonly yes --appendfsync everysec \
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
for script in start_web.sh start_celery_beat.sh start_celery_status_worker.sh \
	start_celery_worker.sh start_flower.sh; do
	bash "$SCRIPT_DIR/$script" || die "$script failed (see above); scripts/stop.sh stops what did start"
done

# --- 6. where things are -------------------------------------------------------------------------
bind="${PROCTOR_BIND:-127.0.0.1:8000}"
first="${bind%%,*}"
case "$first" in
unix:*) web_url="$first (unix socket)" ;;
0.0.0.0:*) web_url="http://$(uname -n):${first##*:}/ (all interfaces)" ;;
*) web_url="http://$first/" ;;
esac
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
  web            $web_url
  admin token    $token_where
  Flower         $flower_url
                 user ${PROCTOR_FLOWER_USER:-admin}, password $flower_password
  Redis          $(url_display "$REDIS_URL")$( ((own_redis)) && printf '  (own, data in %s)' "$(rel_path "$DATA_DIR/redis")")
  logs           $(rel_path "$LOG_DIR")/
  stop           scripts/stop.sh
SUMMARY
