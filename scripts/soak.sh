#!/usr/bin/env bash
# scripts/soak.sh - a soak of the whole stack: simulated students on both front doors (desktop seats
# as the original client behaves, token-API students) against real Gunicorn, status worker, Beat and
# merge worker, with disconnects, client restarts, retried and cut uploads, 100 idle connections and
# the merge worker stopped with SIGTERM and later SIGKILL mid-exam. Prints the figures (students,
# heartbeats, segments sent/acknowledged/stored/merged, 5xx, p50/p99 latencies, RSS per process at
# warm-up and at the end) and exits non-zero when anything was lost, any 5xx was answered or a
# process grew past the bound.
#
# usage: scripts/soak.sh [-h] [-s STUDENTS] [-m MINUTES] [-- MORE...]
#
#   -s STUDENTS   simulated students, half of them desktop seats (default 200)
#   -m MINUTES    length of the exam (default 5); merging and checking take a few minutes more
#   MORE          further options of `python -m tests.soak` (--segment-s, --idle, --partial-headers,
#                 --seed, --json); `.venv/bin/python -m tests.soak -h` lists them
#
# The stack is the soak's own: a private redis-server on a free port, a SQLite file (or, with
# TEST_DATABASE_URL set to a MariaDB/MySQL URL, the database <name>_soak on that server, emptied),
# and a temporary directory for data and logs, removed at the end unless the soak failed or
# PROCTOR_KEEP_SOAK_TMP=1. Only loopback addresses are used (127.0.x.y for the seats).
set -euo pipefail

usage() { sed -n '9,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  echo "soak.sh: error: $*" >&2
  exit 1
}
usage_error() {
  usage >&2
  echo "soak.sh: error: $*" >&2
  exit 2
}

students=200
minutes=5
while getopts ":hs:m:" opt; do
  case "$opt" in
    h) usage; exit 0 ;;
    s) students="$OPTARG" ;;
    m) minutes="$OPTARG" ;;
    :) usage_error "-$OPTARG needs a value" ;;
    *) usage_error "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ "$students" =~ ^[1-9][0-9]*$ ]] || usage_error "STUDENTS must be a whole number from 1, not '$students'"
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ && ! "$minutes" =~ ^0+([.]0+)?$ ]] || usage_error "MINUTES must be a positive number, not '$minutes'"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
PACKAGE_PURPOSE[ffmpeg]="the soak's segments are real clips, merged with ffmpeg"
PACKAGE_PURPOSE[redis-server]="the soak runs a private Redis for its stack"
ensure_packages ffmpeg redis-server || die "missing system packages (see above)"
ensure_venv || die "could not set up .venv from requirements.txt (see above)"

make_work_dir soak PROCTOR_KEEP_SOAK_TMP

echo "soak: $students students, $minutes min exam (started $(date -u +%FT%TZ))"
TMPDIR="$work_dir" .venv/bin/python -m tests.soak --students "$students" --minutes "$minutes" --sigkill "$@" ||
  die "the soak found problems (listed above)"
