# shellcheck shell=bash
# shellcheck disable=SC2034 # variables defined here are used by the scripts that source this file
# scripts/lib.sh - helpers shared by the scripts in this directory. Source it; do not run it.
#
# usage: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"    (from another script in scripts/)
#
# Sourcing it changes to the repository root, so every script works from anywhere, and exports the
# directories below as absolute paths so that the Python side (proctor.config) sees the same ones.
#
# Environment read here (and therefore by every script):
#   PROCTOR_RUN_DIR          pid files and runtime state (default: run, relative to the repo root)
#   PROCTOR_LOG_DIR          log files (default: logs)
#   PROCTOR_DATA_DIR         data directory: database, recordings, secrets (default: var)
#   PROCTOR_START_TIMEOUT_S  seconds a component gets to come up and answer (default: 60)
#   PROCTOR_STOP_TIMEOUT_S   seconds a component gets to stop gracefully before it is killed
#                            (default: 60)
#   REDIS_URL                broker and result store. When unset and the Redis started by
#                            scripts/start.sh is running, its URL is used (see run/redis_url).

set -euo pipefail

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	# shellcheck disable=SC2016 # literally
	echo 'usage: source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"    (from another script in scripts/)'
	case "${1:-}" in -h | --help) exit 0 ;; *) exit 2 ;; esac
fi

PROCTOR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRIPT_DIR="$PROCTOR_ROOT/scripts"
cd "$PROCTOR_ROOT"

# --- messages ------------------------------------------------------------------------------------

_prog="$(basename "${BASH_SOURCE[1]:-$0}")"

info() { printf '%s: %s\n' "$_prog" "$*"; }
warn() { printf '%s: warning: %s\n' "$_prog" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$_prog" "$*" >&2
	exit 1
}

# --- settings ------------------------------------------------------------------------------------

# rel_path PATH: PATH relative to the repository root when it lies inside it (for messages).
rel_path() {
	case "$1" in
	"$PROCTOR_ROOT"/*) printf '%s' "${1#"$PROCTOR_ROOT"/}" ;;
	*) printf '%s' "$1" ;;
	esac
}

# abs_path PATH: PATH made absolute against the repository root (like proctor.config does).
abs_path() {
	case "$1" in
	/*) printf '%s' "$1" ;;
	*) printf '%s/%s' "$PROCTOR_ROOT" "$1" ;;
	esac
}

# positive_int NAME VALUE: VALUE, or die naming the variable.
positive_int() {
	[[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "$1=$2 is not a positive integer"
	printf '%s' "$2"
}

RUN_DIR="$(abs_path "${PROCTOR_RUN_DIR:-run}")"
LOG_DIR="$(abs_path "${PROCTOR_LOG_DIR:-logs}")"
DATA_DIR="$(abs_path "${PROCTOR_DATA_DIR:-var}")"
export PROCTOR_RUN_DIR="$RUN_DIR" PROCTOR_LOG_DIR="$LOG_DIR" PROCTOR_DATA_DIR="$DATA_DIR"
# One prometheus_client multiprocess directory for the web workers and the Celery workers, so
# /metrics also shows what the merge worker counts (merges by outcome, their durations). Flower
# runs without it (scripts/start_flower.sh): its own metrics are not proctor's.
PROM_DIR="$RUN_DIR/prometheus"
export PROMETHEUS_MULTIPROC_DIR="$PROM_DIR"
START_TIMEOUT_S="$(positive_int PROCTOR_START_TIMEOUT_S "${PROCTOR_START_TIMEOUT_S:-60}")"
STOP_TIMEOUT_S="$(positive_int PROCTOR_STOP_TIMEOUT_S "${PROCTOR_STOP_TIMEOUT_S:-60}")"

# The modules (server, celery_config, proctor) live in the repository root.
export PYTHONPATH="$PROCTOR_ROOT${PYTHONPATH:+:$PYTHONPATH}"

CELERY_APP="celery_config.celery_app"

# REDIS_URL as the user gave it; start.sh decides on its own Redis from this, not from the adopted one.
REDIS_URL_GIVEN="${REDIS_URL:-}"

ensure_dirs() {
	mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR" "$PROM_DIR"
}

# prune_metrics: remove the metrics files of processes that no longer run (a worker or web process
# that crashed or was restarted), as the systemd units do before they start; live ones stay.
prune_metrics() {
	"$(python_bin)" -m proctor.cli prune-metrics --dir "$PROM_DIR" >/dev/null ||
		die "could not prune the metrics files in $PROM_DIR"
}

# --- tools ---------------------------------------------------------------------------------------

VENV_DIR="$PROCTOR_ROOT/.venv"

# tool NAME: path of NAME from the project's virtualenv, else from PATH, else die.
tool() {
	if [[ -x "$VENV_DIR/bin/$1" ]]; then
		printf '%s' "$VENV_DIR/bin/$1"
	elif command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
	else
		die "'$1' not found (neither in $VENV_DIR/bin nor on PATH); run scripts/start.sh once, which creates .venv from requirements.txt"
	fi
}

python_bin() {
	if [[ -x "$VENV_DIR/bin/python" ]]; then
		printf '%s' "$VENV_DIR/bin/python"
	else
		command -v python3 || die "python3 not found"
	fi
}

# random_secret: a URL-safe random string of 32 characters (no ':' or ',', safe in basic auth).
random_secret() {
	local s
	s="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
	[[ ${#s} -ge 32 ]] || die "could not read /dev/urandom"
	printf '%s' "$s"
}

# write_secret_file PATH: create PATH (mode 0600) holding a new secret unless it exists.
write_secret_file() {
	local path="$1" tmp
	[[ -s "$path" ]] && return 0
	mkdir -p "$(dirname "$path")"
	tmp="$(mktemp "$path.XXXXXX")"
	chmod 600 "$tmp"
	random_secret >"$tmp"
	printf '\n' >>"$tmp"
	# ln fails if another process created the file meanwhile; then theirs wins.
	ln "$tmp" "$path" 2>/dev/null || true
	rm -f "$tmp"
	[[ -s "$path" ]] || die "could not create $path"
}

# --- Redis of scripts/start.sh -------------------------------------------------------------------

REDIS_PORT="${PROCTOR_REDIS_PORT:-6380}"
REDIS_URL_STATE="$RUN_DIR/redis_url"

# Adopt the URL of start.sh's own Redis when REDIS_URL is unset, so that e.g.
# `scripts/stop_celery.sh && scripts/start_celery_worker.sh` after `scripts/start.sh` uses it too.
if [[ -z "${REDIS_URL:-}" && -s "$REDIS_URL_STATE" ]]; then
	_pid="$(cat "$RUN_DIR/redis.pid" 2>/dev/null || true)"
	if [[ "$_pid" =~ ^[0-9]+$ && -r "/proc/$_pid/cmdline" ]] &&
		tr '\0' ' ' <"/proc/$_pid/cmdline" | grep -q 'redis-server'; then
		REDIS_URL="$(cat "$REDIS_URL_STATE")"
		export REDIS_URL
	fi
	unset _pid
fi

# url_display URL: URL with any user and password replaced by ***.
url_display() {
	# shellcheck disable=SC2001
	sed -E 's#^([a-z]+://)([^@/]*)@#\1***@#' <<<"$1"
}

# tcp_redis_ping HOST PORT: true when a Redis answers PING with PONG there.
tcp_redis_ping() {
	local reply=""
	(
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 2 reply <&3 || exit 1
		[[ "$reply" == "+PONG"* ]]
	) 2>/dev/null
}

# redis_data_dir PID: the data directory of the redis-server PID, with symlinks resolved. Redis
# changes into its --dir at start and rewrites its command line to "redis-server HOST:PORT", so
# its working directory is where it keeps its data, and the command line cannot tell.
redis_data_dir() {
	local dir
	dir="$(readlink "/proc/$1/cwd" 2>/dev/null)" && [[ -n "$dir" ]] || return 1
	printf '%s' "$dir"
}

# --- processes -----------------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# proc_state PID: the one-letter state of PID (R, S, Z, ...), empty when there is no such process.
proc_state() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
	stat="${stat##*) }"
	printf '%s' "${stat%% *}"
}

# proc_alive PID: PID exists and is not a zombie.
proc_alive() {
	local state
	[[ "$1" =~ ^[0-9]+$ ]] || return 1
	state="$(proc_state "$1")"
	[[ -n "$state" && "$state" != Z && "$state" != X ]]
}

proc_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# proc_pgid PID
proc_pgid() {
	local stat pgid
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
	stat="${stat##*) }"
	read -r _ _ pgid _ <<<"$stat"
	printf '%s' "$pgid"
}

# group_members PGID: live (non-zombie) processes of process group PGID, one per line.
group_members() {
	local f stat pid state pgrp
	for f in /proc/[0-9]*/stat; do
		stat="$(cat "$f" 2>/dev/null)" || continue
		pid="${f#/proc/}"
		pid="${pid%/stat}"
		stat="${stat##*) }"
		read -r state _ pgrp _ <<<"$stat"
		[[ "$pgrp" == "$1" && "$state" != Z && "$state" != X ]] && printf '%s\n' "$pid"
	done
	return 0
}

# running_pid NAME MARKER: print the pid recorded for NAME when that process is alive and its
# command line contains MARKER (so a reused pid is not mistaken for ours).
running_pid() {
	local file pid
	file="$(pid_file "$1")"
	[[ -r "$file" ]] || return 1
	pid="$(cat "$file" 2>/dev/null || true)"
	proc_alive "$pid" || return 1
	[[ "$(proc_cmdline "$pid")" == *"$2"* ]] || return 1
	printf '%s' "$pid"
}

# wait_for TIMEOUT_S PID CMD...: poll CMD until it succeeds. Returns 0 when it did, 1 on timeout,
# 2 as soon as PID (unless "-") is no longer alive.
wait_for() {
	local timeout="$1" pid="$2" deadline
	shift 2
	deadline=$((SECONDS + timeout))
	while :; do
		if [[ "$pid" != - ]] && ! proc_alive "$pid"; then return 2; fi
		if "$@"; then
			if [[ "$pid" != - ]] && ! proc_alive "$pid"; then return 2; fi
			return 0
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.5
	done
}

# --- readiness checks ----------------------------------------------------------------------------

# http_answers URL: true when anything answers HTTP at URL (any status code counts).
http_answers() {
	if command -v curl >/dev/null 2>&1; then
		curl --silent --output /dev/null --max-time 5 "$1"
	else
		"$(python_bin)" - "$1" <<-'PY' >/dev/null 2>&1
			import sys, urllib.error, urllib.request
			try:
			    urllib.request.urlopen(sys.argv[1], timeout=5)
			except urllib.error.HTTPError:
			    pass
		PY
	fi
}

# http_answers_unix SOCKET PATH: the same for a unix socket.
http_answers_unix() {
	command -v curl >/dev/null 2>&1 || return 0 # nothing to ask with; trust the alive check
	curl --silent --output /dev/null --max-time 5 --unix-socket "$1" "http://localhost$2"
}

# celery_answers NODENAME [TIMEOUT_S]: the Celery worker NODENAME answers a ping over the broker.
celery_answers() {
	"$(tool celery)" -A "$CELERY_APP" inspect ping -d "$1" --timeout "${2:-3}" >/dev/null 2>&1
}

# log_shows LOG OFFSET TEXT: TEXT appears in LOG after byte OFFSET.
log_shows() {
	tail -c "+$(($2 + 1))" "$1" 2>/dev/null | grep -qF -- "$3"
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# --- start and stop ------------------------------------------------------------------------------

# start_daemon NAME MARKER LOG READY_CMD... -- CMD...
#   Start CMD in the background in a session of its own (so its pid is the pid of CMD and the
#   process group holds all its children), record the pid in run/NAME.pid, append its output to
#   LOG and poll READY_CMD (with its arguments; "{offset}" is replaced by LOG's size before the
#   start) until it succeeds. Says so and returns 0 when NAME already runs. Dies with the end of
#   LOG when CMD exits or does not get ready within PROCTOR_START_TIMEOUT_S.
start_daemon() {
	local name="$1" marker="$2" log="$3" pid file offset rc arg i
	shift 3
	local -a ready=()
	while (($#)) && [[ "$1" != -- ]]; do
		ready+=("$1")
		shift
	done
	[[ "${1:-}" == -- ]] || die "start_daemon: missing -- before the command"
	shift

	if pid="$(running_pid "$name" "$marker")"; then
		info "$name is already running (pid $pid)"
		return 0
	fi
	ensure_dirs
	file="$(pid_file "$name")"
	rm -f "$file"
	offset="$(file_size "$log")"
	for ((i = 0; i < ${#ready[@]}; i++)); do
		arg="${ready[i]}"
		ready[i]="${arg//\{offset\}/$offset}"
	done

	printf '\n=== %s %s: starting: %s\n' "$(date '+%F %T')" "$name" "$*" >>"$log"
	offset="$(file_size "$log")"
	# A background job of a script starts with SIGINT and SIGQUIT ignored; give the daemon the
	# default dispositions back (Celery's cold shutdown is SIGQUIT) where env can.
	local -a reset=()
	if env --default-signal=INT,QUIT true 2>/dev/null; then reset=(env "--default-signal=INT,QUIT"); fi
	setsid "${reset[@]}" nohup "$@" >>"$log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$file.tmp"
	mv -f "$file.tmp" "$file"

	rc=0
	wait_for "$START_TIMEOUT_S" "$pid" "${ready[@]}" || rc=$?
	case "$rc" in
	0)
		info "$name started (pid $pid, log $log)"
		return 0
		;;
	2)
		_signal_group "$pid" KILL 1 # children it may have left in its (setsid) process group
		rm -f "$file"
		_show_log_tail "$log" "$offset"
		die "$name exited while starting (see $log)"
		;;
	*)
		_stop_pids "$START_TIMEOUT_S" "$name:$pid:$marker" >/dev/null 2>&1 || true
		rm -f "$file"
		_show_log_tail "$log" "$offset"
		die "$name did not answer within ${START_TIMEOUT_S}s (PROCTOR_START_TIMEOUT_S); stopped it again (see $log)"
		;;
	esac
}

_show_log_tail() {
	printf -- '--- last lines of %s ---\n' "$1" >&2
	tail -c "+$(($2 + 1))" "$1" 2>/dev/null | tail -n 25 >&2 || true
	printf -- '---\n' >&2
}

# _signal_group PID SIGNAL IS_GROUP: send SIGNAL to the process group PID (IS_GROUP=1: PID led a
# group of its own when we looked, as setsid makes it; the group id stays reserved while any member
# lives, even after the leader exited), else to PID alone.
_signal_group() {
	if [[ "$3" == 1 ]]; then
		kill "-$2" -- "-$1" 2>/dev/null || true
	else
		kill "-$2" "$1" 2>/dev/null || true
	fi
}

# _stop_pids TIMEOUT_S NAME:PID:MARKER[:cold]...
#   Stop all given processes at once: SIGTERM to each main process (a Celery worker then finishes
#   its running tasks: warm shutdown), wait up to TIMEOUT_S for each process group to be empty; for
#   entries marked "cold" (Celery workers) then SIGQUIT (cold shutdown: running tasks are cancelled
#   and, being acks_late, go back to the queue) with 30 s more; finally SIGKILL to whatever is left
#   of each group, so no stray children (pool processes, ffmpeg) survive.
_stop_pids() {
	local timeout="$1" entry name pid marker mode deadline left
	shift
	local -a names=() pids=() modes=() groups=()
	for entry in "$@"; do
		IFS=: read -r name pid marker mode <<<"$entry"
		names+=("$name")
		pids+=("$pid")
		modes+=("${mode:-}")
		if [[ "$(proc_pgid "$pid")" == "$pid" ]]; then groups+=(1); else groups+=(0); fi
		info "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
	done

	_groups_left() {
		local i
		left=()
		for i in "${!pids[@]}"; do
			if [[ -n "$(group_members "${pids[i]}")" ]] || proc_alive "${pids[i]}"; then left+=("$i"); fi
		done
		((${#left[@]} == 0))
	}

	local -a left=()
	deadline=$((SECONDS + timeout))
	until _groups_left; do
		((SECONDS < deadline)) || break
		sleep 0.5
	done
	if ((${#left[@]})); then
		local i cold=0
		for i in "${left[@]}"; do
			if [[ "${modes[i]}" == cold ]]; then
				warn "${names[i]} still running after ${timeout}s (PROCTOR_STOP_TIMEOUT_S): cold shutdown, running tasks go back to the queue"
				kill -QUIT "${pids[i]}" 2>/dev/null || true
				cold=1
			fi
		done
		if ((cold)); then
			deadline=$((SECONDS + 30))
			until _groups_left; do
				((SECONDS < deadline)) || break
				sleep 0.5
			done
		fi
		for i in "${left[@]}"; do
			warn "${names[i]} did not stop in time; killing its process group"
			_signal_group "${pids[i]}" KILL "${groups[i]}"
		done
		deadline=$((SECONDS + 10))
		until _groups_left; do
			((SECONDS < deadline)) || break
			sleep 0.2
		done
	fi
	local rc=0 i
	for i in "${!pids[@]}"; do
		if [[ -n "$(group_members "${pids[i]}")" ]] || proc_alive "${pids[i]}"; then
			warn "${names[i]} (pid ${pids[i]}) is still there after SIGKILL"
			rc=1
		else
			info "${names[i]} stopped"
		fi
	done
	return "$rc"
}

# stop_daemons NAME:MARKER[:cold]...: stop the named daemons (in parallel) and remove their pid
# files; names that are not running are reported as such.
stop_daemons() {
	local entry name marker mode pid file
	local -a todo=()
	for entry in "$@"; do
		IFS=: read -r name marker mode <<<"$entry"
		file="$(pid_file "$name")"
		if pid="$(running_pid "$name" "$marker")"; then
			todo+=("$name:$pid:$marker:${mode:-}")
		else
			# The main process is gone; clean up any children it left in its process group.
			pid="$(cat "$file" 2>/dev/null || true)"
			if [[ "$pid" =~ ^[0-9]+$ ]] && [[ -n "$(group_members "$pid")" ]]; then
				local p strays=0
				for p in $(group_members "$pid"); do
					if [[ "$(proc_cmdline "$p")" == *"$marker"* ]]; then
						kill -KILL "$p" 2>/dev/null || true
						strays=1
					fi
				done
				((strays)) && warn "$name was not running but left processes behind; killed them"
			fi
			info "$name is not running"
			rm -f "$file"
		fi
	done
	((${#todo[@]})) || return 0
	local rc=0
	_stop_pids "$STOP_TIMEOUT_S" "${todo[@]}" || rc=$?
	for entry in "${todo[@]}"; do
		IFS=: read -r name pid _ <<<"$entry"
		proc_alive "$pid" || rm -f "$(pid_file "$name")"
	done
	return "$rc"
}

# --- components ----------------------------------------------------------------------------------
# Pid-file names and command-line markers, shared by the start and stop scripts. A marker is a piece
# of the command line that tells our process from an unrelated one that got the same pid.

STATUS_NODE="status@$(uname -n)"
MERGE_NODE="merge@$(uname -n)"

MARK_WEB="gunicorn_config.py"
MARK_FLOWER="flowerconfig.py"
MARK_BEAT="$CELERY_APP beat "
MARK_STATUS="-n $STATUS_NODE "
MARK_MERGE="-n $MERGE_NODE "
MARK_REDIS="redis-server"

# Entries for stop_daemons (NAME:MARKER[:cold]).
STOP_WEB="web:$MARK_WEB"
STOP_FLOWER="flower:$MARK_FLOWER"
STOP_BEAT="celery_beat:$MARK_BEAT"
STOP_STATUS="celery_worker_status:$MARK_STATUS:cold"
STOP_MERGE="celery_worker_merge:$MARK_MERGE:cold"
STOP_REDIS="redis:$MARK_REDIS"

# start_celery_worker NAME MARKER NODE QUEUE CONCURRENCY LOG: start one Celery worker daemon, unless
# it already runs; ready when NODE answers a ping.
start_celery_worker() {
	local name="$1" marker="$2" node="$3" queue="$4" concurrency="$5" log="$6" pid celery
	celery="$(tool celery)"
	if pid="$(running_pid "$name" "$marker")"; then
		info "$name is already running (pid $pid)"
		return 0
	fi
	if celery_answers "$node" 1; then
		die "a worker named $node already answers on this broker but was not started from $RUN_DIR; stop it first"
	fi
	start_daemon "$name" "$marker" "$log" \
		celery_answers "$node" -- \
		"$celery" -A "$CELERY_APP" worker \
		--queues "$queue" \
		--concurrency "$concurrency" \
		-n "$node" \
		--loglevel INFO \
		--task-events \
		--logfile "$log"
}
