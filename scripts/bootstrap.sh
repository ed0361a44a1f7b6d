# Shared set-up for scripts/start.sh and scripts/test.sh (sourced, not run): system packages and
# the virtualenv. Expects to be sourced from the repository root.

# Install Debian packages whose commands are missing, when we can; else say what to install.
ensure_packages() {
  local missing=() pkg cmd
  for pkg in "$@"; do
    case "$pkg" in
      redis-server) cmd=redis-server ;;
      systemd) cmd=systemd-analyze ;;
      *) cmd="$pkg" ;;
    esac
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
}

# Like ensure_packages, for tools some tests use: without root, warn (those tests skip) and go on.
want_packages() {
  if [[ "$(id -u)" -eq 0 ]]; then
    ensure_packages "$@"
  else
    ensure_packages "$@" 2>/dev/null || echo "note: without $* some tests will be skipped" >&2
  fi
}

# Create or refresh .venv when requirements.txt changed since it was built.
ensure_venv() {
  local want have=""
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  [[ -f .venv/requirements.sha256 ]] && have="$(cat .venv/requirements.sha256)"
  if [[ ! -x .venv/bin/python || "$want" != "$have" ]]; then
    echo "setting up .venv from requirements.txt"
    python3 -m venv .venv || {
      echo "error: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
      return 1
    }
    # pip's output goes to a file and is shown only when the install fails.
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -r requirements.txt; } \
      >.venv/pip-install.log 2>&1; then
      cat .venv/pip-install.log >&2
      echo "error: pip could not install requirements.txt (log above, also in .venv/pip-install.log)" >&2
      return 1
    fi
    echo "$want" > .venv/requirements.sha256
  fi
}
