#!/usr/bin/env bash
# Run the whole test suite, on SQLite and then on MariaDB/MySQL.
#
# Usage: scripts/test.sh [-h] [pytest args...]
#
#   TEST_MYSQL_URL   database for the second run (default: mysql+pymysql://root@127.0.0.1:3306/test;
#                    set it to "skip" to run on SQLite only). The database's tables are dropped.
#                    When it does not answer, the run is skipped with a note, except under CI=true.
#   TEST_REDIS_URL   Redis for the tests (default: redis://127.0.0.1:6379/15; that db is flushed,
#                    and with two test processes db 14 too, and db 13 for the operations tests).
#                    When the default does not answer, a private redis-server is started for the run.
#   PROCTOR_TEST_PROCESSES  test files run in this many processes at once (default 2), each with
#                    a database (<name>_gw1 on MariaDB) and a Redis db of its own.
#   PROCTOR_KEEP_TEST_TMP=1  keep the run's temporary directory (logs of the servers the tests
#                    started) instead of removing it at the end; its path is printed.
#
# Installs what a fresh Debian machine lacks, saying what and why before each apt-get install
# (ffmpeg and redis-server; as root also systemd, shellcheck and curl for the operations tests)
# and the virtualenv from requirements.txt.
#
# Temporary files: each run of the suite gets a directory of its own below one temporary
# directory (/tmp/proctor-test-XXXXXX), exported as PROCTOR_TEST_TMP and TMPDIR and given to
# pytest as --basetemp; it is removed when this script ends, also on failure or Ctrl-C.
# Leftovers of earlier runs that were killed (/tmp/proctor-test-*, older than a day) are removed
# at the start.
set -euo pipefail

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  usage
  exit 0
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh

die() {
  echo "test.sh: error: $*" >&2
  exit 1
}

# --- temporary files -----------------------------------------------------------------------------
# Runs killed before their clean-up left their directories: remove those older than a day (a run
# takes minutes, so none of them can still be in use).
tmp_base="${TMPDIR:-/tmp}"
find "$tmp_base" -maxdepth 1 -name 'proctor-test-*' -user "$(id -u)" -mmin +1440 \
  -exec rm -rf --one-file-system {} + 2>/dev/null || true

tmp_root="$(mktemp -d "$tmp_base/proctor-test-XXXXXX")" || die "cannot create a temporary directory in $tmp_base"
redis_pid_file=""
cleanup() {
  local rc=$?
  if [[ -n "$redis_pid_file" && -s "$redis_pid_file" ]]; then
    kill "$(cat "$redis_pid_file")" 2>/dev/null || true
  fi
  if [[ "${PROCTOR_KEEP_TEST_TMP:-}" == 1 ]]; then
    echo "test.sh: kept the temporary files in $tmp_root"
  else
    rm -rf --one-file-system "$tmp_root" 2>/dev/null ||
      echo "test.sh: warning: could not remove all of $tmp_root" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -------------------------------------------------------------------------------
PACKAGE_PURPOSE[ffmpeg]="the merge tests run ffmpeg and ffprobe on real clips"
PACKAGE_PURPOSE[redis-server]="the tests need a Redis (one of their own when none answers on 6379)"
PACKAGE_PURPOSE[chromium]="the console's browser tests run it headless (skipped without it)"
PACKAGE_PURPOSE[chromium-driver]="Selenium drives chromium through chromedriver in the console's browser tests"
PACKAGE_PURPOSE[fonts-wqy-microhei]="the screenshots of the Chinese pages show Chinese characters, not empty boxes"
PACKAGE_PURPOSE[systemd]="the operations tests check the units with systemd-analyze verify (skipped without it)"
PACKAGE_PURPOSE[shellcheck]="the operations tests lint scripts/*.sh with it (skipped without it)"
PACKAGE_PURPOSE[curl]="the start scripts check readiness with it (the operations tests run them)"
PACKAGE_PURPOSE[strace]="the power-cut tests check the order of fsync and rename with it (skipped without it)"
PACKAGE_PURPOSE[firefox-esr]="the exam page's Firefox test drives it headless over WebDriver BiDi (skipped without it)"
PACKAGE_PURPOSE[xvfb]="the screen headless Firefox shares in the exam page's Firefox test (skipped without it)"
ensure_packages ffmpeg redis-server || die "missing system packages (see above)"
want_packages systemd shellcheck curl strace
ensure_venv || die "could not set up .venv from requirements.txt (see above)"
want_packages chromium chromium-driver fonts-wqy-microhei firefox-esr xvfb

answers() { .venv/bin/python -c "$1" "$2" >/dev/null 2>&1; }
redis_answers() { answers "import redis,sys; redis.Redis.from_url(sys.argv[1]).ping()" "$1"; }
db_answers() { answers "import sqlalchemy as sa,sys; sa.create_engine(sys.argv[1]).connect().close()" "$1"; }

# A private Redis when none runs where the tests look by default (a fresh machine).
if [[ -z "${TEST_REDIS_URL:-}" ]] && ! redis_answers "redis://127.0.0.1:6379/15"; then
  redis_dir="$tmp_root/redis"
  mkdir -p "$redis_dir"
  redis_port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis_pid_file="$redis_dir/redis.pid"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$redis_pid_file" --logfile "$redis_dir/redis.log" ||
    die "could not start a private redis-server"
  TEST_REDIS_URL="redis://127.0.0.1:$redis_port/15"
  for _ in $(seq 50); do redis_answers "$TEST_REDIS_URL" && break; sleep 0.1; done
  echo "no Redis on 127.0.0.1:6379: using a private one at $TEST_REDIS_URL"
fi
: "${TEST_REDIS_URL:=redis://127.0.0.1:6379/15}"
export TEST_REDIS_URL
redis_answers "$TEST_REDIS_URL" || die "no Redis answers at $TEST_REDIS_URL (start one, or set TEST_REDIS_URL)"

mysql_url="${TEST_MYSQL_URL:-mysql+pymysql://root@127.0.0.1:3306/test}"
if [[ "$mysql_url" != "skip" ]] && ! db_answers "$mysql_url"; then
  [[ "${CI:-}" != "true" ]] || die "the MariaDB/MySQL at $mysql_url does not answer; CI must test on it"
  echo "note: no MariaDB/MySQL answers at $mysql_url: running on SQLite only (set TEST_MYSQL_URL)" >&2
  mysql_url="skip"
fi

# run_suite NAME [VAR=VALUE...] -- PYTEST_ARGS...: one run of the suite with a temporary directory
# of its own, removed after it (the whole of $tmp_root goes at exit anyway).
run_suite() {
  local name="$1" dir rc=0
  shift
  local -a settings=()
  while [[ "$1" != -- ]]; do
    settings+=("$1")
    shift
  done
  shift
  dir="$tmp_root/$name"
  mkdir -p "$dir"
  env "${settings[@]}" TMPDIR="$dir" PROCTOR_TEST_TMP="$dir" \
    .venv/bin/python -m pytest -q -p no:cacheprovider --basetemp="$dir/pytest" "${parallel[@]}" "$@" || rc=$?
  [[ "${PROCTOR_KEEP_TEST_TMP:-}" == 1 ]] || rm -rf --one-file-system "$dir" 2>/dev/null || true
  return "$rc"
}

# Test files run in PROCTOR_TEST_PROCESSES processes at once (default 2: most of a test's time is
# spent waiting on Gunicorn, Celery and FFmpeg), each with its own database and Redis db.
processes="${PROCTOR_TEST_PROCESSES:-2}"
[[ "$processes" =~ ^[1-9][0-9]*$ ]] || die "PROCTOR_TEST_PROCESSES must be a whole number from 1, not '$processes'"
parallel=()
(( processes > 1 )) && parallel=(-n "$processes" --dist loadfile)

echo "== tests on SQLite"
run_suite sqlite -u TEST_DATABASE_URL -- "$@"

if [[ "$mysql_url" == "skip" ]]; then
  echo "== MariaDB run skipped (TEST_MYSQL_URL=skip)"
  exit 0
fi
echo "== tests on MariaDB/MySQL ($mysql_url)"
run_suite mysql TEST_DATABASE_URL="$mysql_url" -- "$@"
