#!/usr/bin/env bash
# Run the whole test suite, on SQLite and then on MariaDB/MySQL.
#
# Usage: scripts/test.sh [-h] [pytest args...]
#
#   TEST_MYSQL_URL   database for the second run (default: mysql+pymysql://root@127.0.0.1:3306/test;
#                    set it to "skip" to run on SQLite only). The database's tables are dropped.
#   TEST_REDIS_URL   Redis for the tests (default: redis://127.0.0.1:6379/15; that db is flushed).
#
# Installs what a fresh Debian machine lacks (ffmpeg; systemd for systemd-analyze, shellcheck and
# curl for the operations tests, when running as root) and the virtualenv from requirements.txt.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
ensure_packages ffmpeg
want_packages systemd shellcheck curl
ensure_venv

: "${TEST_REDIS_URL:=redis://127.0.0.1:6379/15}"
export TEST_REDIS_URL
if ! .venv/bin/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$TEST_REDIS_URL" 2>/dev/null; then
  echo "error: no Redis answers at $TEST_REDIS_URL (start one, or set TEST_REDIS_URL)" >&2
  exit 1
fi

mysql_url="${TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/test}"

echo "== tests on SQLite"
env -u TEST_DATABASE_URL .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

if [[ "$mysql_url" == "skip" ]]; then
  echo "== MariaDB run skipped (TEST_MYSQL_URL=skip)"
  exit 0
fi
echo "== tests on MariaDB/MySQL ($mysql_url)"
TEST_DATABASE_URL="$mysql_url" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
