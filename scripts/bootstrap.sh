# shellcheck shell=bash
# scripts/bootstrap.sh - shared set-up for scripts/start.sh, test.sh, bench.sh and soak.sh: system packages
# and the virtualenv. Sourced, not run, from the repository root.
#
# usage: source scripts/bootstrap.sh    (then: ensure_packages PKG..., want_packages PKG..., ensure_venv,
#        make_work_dir NAME KEEP_VARIABLE)
#
# Every apt-get install is announced first, one line per package saying what it is for; apt-get's
# own output goes to a log that is shown only when it fails. Building .venv prints a line per
# package pip collects; pip's full output is in .venv/pip-install.log.

set -euo pipefail

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "usage: source scripts/bootstrap.sh    (from scripts/start.sh or scripts/test.sh)"
  case "${1:-}" in -h | --help) exit 0 ;; *) exit 2 ;; esac
fi

# What each package is for, said before it is installed. A caller may set its own entry first.
declare -gA PACKAGE_PURPOSE
: "${PACKAGE_PURPOSE[python3]:=proctor is written in Python}"
: "${PACKAGE_PURPOSE[python3-venv]:=to create the virtualenv .venv}"
: "${PACKAGE_PURPOSE[ffmpeg]:=the merge worker joins the recorded segments with ffmpeg and ffprobe}"
: "${PACKAGE_PURPOSE[redis-server]:=the Celery broker and the presence store}"
: "${PACKAGE_PURPOSE[systemd]:=systemd-analyze checks the units in systemd/}"
: "${PACKAGE_PURPOSE[shellcheck]:=lints scripts/*.sh}"
: "${PACKAGE_PURPOSE[curl]:=the readiness checks of the scripts ask over HTTP with it}"

_apt_updated=0

# apt_install PKG...: announce each package and why, then install them quietly (apt-get's output is
# shown only when it fails).
apt_install() {
  local pkg log rc=0
  for pkg in "$@"; do
    echo "installing $pkg with apt-get: ${PACKAGE_PURPOSE[$pkg]:-needed here}"
  done
  log="$(mktemp "${TMPDIR:-/tmp}/proctor-apt.XXXXXX")"
  if ((!_apt_updated)); then
    echo "  (apt-get update first)"
    apt-get update -qq >>"$log" 2>&1 || rc=$?
    ((rc)) || _apt_updated=1
  fi
  if ((rc == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 || rc=$?
  fi
  if ((rc)); then
    cat "$log" >&2
    echo "error: apt-get could not install: $* (its output is above)" >&2
  fi
  rm -f "$log"
  return "$rc"
}

# ensure_packages PKG...: install the Debian packages whose commands are missing, when we can (root
# and apt-get); else say what to install and fail.
ensure_packages() {
  local missing=() pkg cmd
  for pkg in "$@"; do
    case "$pkg" in
      redis-server) cmd=redis-server ;;
      systemd) cmd=systemd-analyze ;;
      chromium-driver) cmd=chromedriver ;;
      *) cmd="$pkg" ;;
    esac
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt_install "${missing[@]}"
  else
    echo "error: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
}

# want_packages PKG...: like ensure_packages, for tools some tests use: without root, warn (those
# tests skip) and go on.
want_packages() {
  if [[ "$(id -u)" -eq 0 ]]; then
    ensure_packages "$@"
  else
    ensure_packages "$@" 2>/dev/null || echo "note: without $* some tests will be skipped" >&2
  fi
}

# _pip_progress: one line per package pip collects (from an index, or a local wheel it processes),
# from pip's output on stdin.
_pip_progress() {
  awk '
    /^(Collecting|Processing) / { n++; name = $2; sub(".*/", "", name); printf "  [%d] %s\n", n, name; fflush() }
    /^Installing collected packages/ { print "  installing what was collected"; fflush() }
    /^Successfully installed/ { printf "  installed %d packages\n", NF - 2; fflush() }
  '
}

# ensure_venv: create or refresh .venv when requirements.txt changed since it was built.
ensure_venv() {
  local want have="" log=.venv/pip-install.log
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  [[ -f .venv/requirements.sha256 ]] && have="$(cat .venv/requirements.sha256)"
  [[ -x .venv/bin/python && "$want" == "$have" ]] && return 0

  echo "setting up .venv from requirements.txt (about a minute on a fresh machine; log: $log)"
  python3 -m venv .venv || {
    echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    return 1
  }
  : >"$log"
  echo "  upgrading pip"
  if ! .venv/bin/pip install --progress-bar off --upgrade pip >>"$log" 2>&1 ||
    ! .venv/bin/pip install --progress-bar off -r requirements.txt 2>&1 | tee -a "$log" | _pip_progress; then
    cat "$log" >&2
    echo "error: pip could not install requirements.txt (log above, also in $log)" >&2
    return 1
  fi
  echo "$want" >.venv/requirements.sha256
}

# make_work_dir NAME KEEP_VARIABLE: a temporary directory of this run, in $work_dir (below TMPDIR),
# removed when the script ends; kept, and its path said, when the script failed or the variable
# named KEEP_VARIABLE is 1 (its logs are what tells why).
make_work_dir() {
  _work_name="$1"
  _work_keep="$2"
  work_dir="$(mktemp -d "${TMPDIR:-/tmp}/proctor-$_work_name-XXXXXX")" || {
    echo "$_work_name: error: cannot create a temporary directory in ${TMPDIR:-/tmp}" >&2
    exit 1
  }
  trap _remove_work_dir EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

_remove_work_dir() {
  local rc=$?
  if [[ "$rc" -ne 0 || "${!_work_keep:-}" == 1 ]]; then
    echo "$_work_name: logs and data kept in $work_dir" >&2
  else
    rm -rf --one-file-system "$work_dir" 2>/dev/null || echo "$_work_name: warning: could not remove $work_dir" >&2
  fi
  exit "$rc"
}
