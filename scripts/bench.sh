#!/usr/bin/env bash
# scripts/bench.sh - every speed target of proctor against its baseline, measured in one run on this
# machine (bench/suite.py): heartbeats (token API and seats) and uploads with wrk against the app
# under the project's gunicorn_config.py and against a bare Flask app under the same settings, an
# upload late in a long session, the merge against plain `ffmpeg -f concat -c copy` (one, and 500
# sessions finished at once on the whole stack), the status check, and how soon a merge whose worker was SIGKILLed is merged again. Prints the table (figure, baseline, ratio, target, met?) and writes it, with the machine
# and the date, to bench/results.md; other students' calls while 200 uploads trickle at 1 KiB/s, and
# a whole hall (N seats at the original client's cadence + N token students on the whole stack).
# A full run takes about 35 minutes on 2 cores.
#
# usage: scripts/bench.sh [-h] [--smoke] [--runs R] [--out FILE] [--only STEP,...]
#                         [--hall-seats N,...] [--hall-seconds S]
#
#   --smoke     every benchmark on little data for a few seconds (shows the command works; its
#               figures say nothing)
#   --runs R    runs of each benchmark, each figure their median (default 3; 2 with --smoke)
#   --out FILE  where the table goes (default bench/results.md; with --only, nowhere unless given)
#   --only STEP,...  only these of heartbeats, uploads, late-upload, merge, exam-end, status, recovery,
#               slow-clients, hall
#   --hall-seats N,...  the hall's seats (and as many token students), a run and a row for each
#               (default 50,300: this machine's load generator cannot play 3,000; 2 with --smoke)
#   --hall-seconds S  how long the hall's exam lasts (default 120; 10 with --smoke)
#
# The stack is the benchmark's own: a private redis-server on a free port (BENCH_REDIS_URL to use
# another; its db is emptied), a SQLite file (BENCH_DATABASE_URL for MariaDB/MySQL; its tables are
# dropped) and data in a temporary directory removed at the end (PROCTOR_KEEP_BENCH_TMP=1 keeps it).
# As root it installs what is missing (wrk, ffmpeg, redis-server) with apt-get.
set -euo pipefail

usage() { sed -n '11,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  echo "bench.sh: error: $*" >&2
  exit 1
}
usage_error() {
  usage >&2
  echo "bench.sh: error: $*" >&2
  exit 2
}

args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --smoke) args+=(--smoke); shift ;;
    --runs)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage_error "--runs needs a whole number from 1"
      args+=(--runs "$2"); shift 2 ;;
    --out)
      [[ $# -ge 2 && -n "$2" ]] || usage_error "--out needs a file name"
      args+=(--out "$(realpath -m -- "$2")"); shift 2 ;;
    --only)
      steps="heartbeats|uploads|late-upload|merge|status|recovery|slow-clients|hall"
      [[ $# -ge 2 && "$2" =~ ^($steps)(,($steps))*$ ]] ||
        usage_error "--only needs steps among ${steps//|/, } (comma-separated)"
      args+=(--only "$2"); shift 2 ;;
    --hall-seats)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
        usage_error "--hall-seats needs whole numbers from 1, comma-separated"
      args+=(--hall-seats "$2"); shift 2 ;;
    --hall-seconds)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage_error "--hall-seconds needs a whole number from 1"
      args+=(--hall-seconds "$2"); shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
PACKAGE_PURPOSE[wrk]="the HTTP load generator of the heartbeat and upload benchmarks"
PACKAGE_PURPOSE[ffmpeg]="the merge benchmark runs ffmpeg and ffprobe"
PACKAGE_PURPOSE[redis-server]="the benchmark runs a private Redis"
ensure_packages wrk ffmpeg redis-server || die "missing system packages (see above)"
ensure_venv || die "could not set up .venv from requirements.txt (see above)"

make_work_dir bench PROCTOR_KEEP_BENCH_TMP

# The open-files limit bounds wrk's and Gunicorn's connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
TMPDIR="$work_dir" .venv/bin/python bench/suite.py "${args[@]}" || die "a benchmark failed (its output is above)"
