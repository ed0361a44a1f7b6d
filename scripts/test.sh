#!/usr/bin/env bash
# Run the whole test suite, on SQLite and then on MariaDB/MySQL.
#
# Usage: scripts/test.sh [-h] [pytest args...]
#
#   TEST_MYSQL_URL   database for the second run (default: mysql+pymysql://root@127.0.0.1:3306/test;
#                    set it to "skip" to run on SQLite only). The database's tables are dropped.
#                    When it does not answer, the run is skipped with a note, except under CI=true.
#   TEST_REDIS_URL   Redis for the tests (default: redis://127.0.0.1:6379/15; that db is flushed).
#                    When the default does not answer, a private redis-server is started for the run.
#
# Installs what a fresh Debian machine lacks (ffmpeg; systemd for systemd-analyze, shellcheck and
# curl for the operations tests, when running as root) and the virtualenv from requirements.txt.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
ensure_packages ffmpeg redis-server
want_packages systemd shellcheck curl
ensure_venv

answers() { .venv/bin/python -c "$1" "$2" >/dev/null 2>&1; }
redis_answers() { answers "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$1"; }
db_answers() { answers "import sqlalchemy as sa,sys; sa.create_engine(sys.argv[1]).connect().close()" "$1"; }

# A private Redis when none runs where the tests look by default (a fresh machine).
if [[ -z "${TEST_REDIS_URL:-}" ]] && ! redis_answers "redis://127.0.0.1:6379/15"; then
  redis_dir="$(mktemp -d)"
  redis_port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
  trap 'kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
  TEST_REDIS_URL="redis://127.0.0.1:$redis_port/15"
  for _ in $(seq 50); do redis_answers "$TEST_REDIS_URL" && break; sleep 0.1; done
  echo "no Redis on 127.0.0.1:6379: using a private one at $TEST_REDIS_URL"
fi
: "${TEST_REDIS_URL:=redis://127.0.0.1:6379/15}"
export TEST_REDIS_URL
if ! redis_answers "$TEST_REDIS_URL"; then
  echo "error: no Redis answers at $TEST_REDIS_URL (start one, or set TEST_REDIS_URL)" >&2
  exit 1
fi

mysql_url="${TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/test}"
if [[ "$mysql_url" != "skip" ]] && ! db_answers "$mysql_url"; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "error: the MariaDB/MySQL at $mysql_url does not answer; CI must test on it" >&2
    exit 1
  fi
  echo "note: no MariaDB/MySQL answers at $mysql_url: running on SQLite only (set TEST_MYSQL_URL)" >&2
  mysql_url="skip"
fi

echo "== tests on SQLite"
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

if [[ "$mysql_url" == "skip" ]]; then
  echo "== MariaDB run skipped (TEST_MYSQL_URL=skip)"
  exit 0
fi
echo "== tests on MariaDB/MySQL ($mysql_url)"
TEST_DATABASE_URL="$mysql_url" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
