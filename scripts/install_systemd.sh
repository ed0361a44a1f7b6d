#!/usr/bin/env bash
# scripts/install_systemd.sh - install proctor as systemd services, run from the checkout that is
# to be served (normally /opt/proctor):
#
# usage: scripts/install_systemd.sh [-h] [--dry-run] [--root DIR] [--data-dir DIR] [--log-dir DIR]
#
#   1. creates the system user and group "proctor" (no login, home = the data directory);
#   2. creates the data directory (default /var/lib/proctor) and the log directory (default
#      /var/log/proctor), owned by proctor, mode 0750;
#   3. writes /etc/proctor/proctor.env from systemd/proctor.env.example with a generated
#      PROCTOR_ADMIN_TOKEN and PROCTOR_FLOWER_PASSWORD (mode 0640, root:proctor). An existing env
#      file is never overwritten; its PROCTOR_DATA_DIR and PROCTOR_LOG_DIR are used;
#   4. creates .venv from requirements.txt when missing or outdated, installs ffmpeg when missing;
#   5. runs the database migrations (alembic upgrade head) as proctor with that environment;
#   6. writes the units of systemd/ (proctor.target, proctor-web, proctor-beat,
#      proctor-worker-status, proctor-worker-merge, proctor-flower) to /etc/systemd/system with
#      this checkout, the data and the log directory filled in, and enables them.
# It starts nothing: "systemctl start proctor.target" does. Running it again updates the units
# and runs new migrations; the env file and the secrets in it stay as they are.
#
#   --dry-run       print what would be done, change nothing
#   --root DIR      write the env file, directories and units below DIR instead of / (for tests
#                   and images); skips creating the user, chown, the virtualenv and migrations;
#                   enables with "systemctl --root DIR"
#   --data-dir DIR  data directory for a new env file and the units (default /var/lib/proctor)
#   --log-dir DIR   log directory likewise (default /var/log/proctor)
# Must run as root unless --root or --dry-run is given.
set -euo pipefail

usage() {
	echo "usage: scripts/install_systemd.sh [-h] [--dry-run] [--root DIR] [--data-dir DIR] [--log-dir DIR]"
	echo "Create the proctor user and directories, /etc/proctor/proctor.env (with generated secrets),"
	echo "run the migrations, install and enable the systemd units (proctor.target)."
}

dry=0
root=""
data_dir=""
log_dir=""
while (($#)); do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--dry-run) dry=1 ;;
	--root | --data-dir | --log-dir)
		[[ $# -ge 2 && -n "$2" ]] || { usage >&2; exit 2; }
		case "$1" in
		--root) root="$2" ;;
		--data-dir) data_dir="$2" ;;
		--log-dir) log_dir="$2" ;;
		esac
		shift
		;;
	--root=* | --data-dir=* | --log-dir=*)
		value="${1#*=}"
		case "$1" in
		--root=*) root="$value" ;;
		--data-dir=*) data_dir="$value" ;;
		--log-dir=*) log_dir="$value" ;;
		esac
		;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

# Relative paths are relative to where we were called from (lib.sh changes to the repo root).
if [[ -n "$root" && "$root" != /* ]]; then root="$(pwd -P)/$root"; fi

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bootstrap.sh
source "$SCRIPT_DIR/bootstrap.sh"

USER_NAME=proctor
APP_DIR="$PROCTOR_ROOT"
TEMPLATE_DIR="$PROCTOR_ROOT/systemd"
UNITS=(proctor.target proctor-web.service proctor-beat.service proctor-worker-status.service
	proctor-worker-merge.service proctor-flower.service)

# Paths end up in unit files and sed expressions: keep them plain.
check_path() {
	[[ "$2" =~ ^/[A-Za-z0-9._/+-]*$ && "$2" != *//* && "$2" != */ ]] ||
		die "$1 must be an absolute path of letters, digits and ._/+- without a trailing / (got '$2')"
}

if [[ -n "$root" ]]; then
	root="${root%/}"
	[[ -n "$root" ]] || die "--root / means no --root"
fi
((dry)) || [[ -n "$root" ]] || [[ "$(id -u)" -eq 0 ]] || die "must run as root (or with --dry-run or --root DIR)"
check_path "the checkout" "$APP_DIR"

ENV_FILE=/etc/proctor/proctor.env
env_dest="$root$ENV_FILE"

# env_file_value FILE KEY: the value of KEY in an EnvironmentFile (empty when absent).
env_file_value() {
	local line value=""
	while IFS= read -r line || [[ -n "$line" ]]; do
		line="${line#"${line%%[![:space:]]*}"}"
		if [[ "$line" == "$2="* ]]; then
			value="${line#*=}"
			if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
		fi
	done <"$1"
	printf '%s' "$value"
}

# load_env_file FILE: export the KEY=VALUE lines of an EnvironmentFile.
load_env_file() {
	local line key value
	while IFS= read -r line || [[ -n "$line" ]]; do
		line="${line#"${line%%[![:space:]]*}"}"
		[[ -z "$line" || "$line" == \#* || "$line" == \;* || "$line" != *=* ]] && continue
		key="${line%%=*}"
		value="${line#*=}"
		[[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
		if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
		export "$key=$value"
	done <"$1"
}

# act CMD...: run CMD, or only print it with --dry-run.
act() {
	if ((dry)); then
		printf '[dry-run] %s\n' "$*"
	else
		"$@"
	fi
}

# Directories: an existing env file decides, then the options, then the defaults.
if [[ -f "$env_dest" ]]; then
	existing_data="$(env_file_value "$env_dest" PROCTOR_DATA_DIR)"
	existing_log="$(env_file_value "$env_dest" PROCTOR_LOG_DIR)"
	if [[ -n "$data_dir" && -n "$existing_data" && "$data_dir" != "$existing_data" ]]; then
		die "--data-dir $data_dir differs from PROCTOR_DATA_DIR=$existing_data in $env_dest; change that file first"
	fi
	if [[ -n "$log_dir" && -n "$existing_log" && "$log_dir" != "$existing_log" ]]; then
		die "--log-dir $log_dir differs from PROCTOR_LOG_DIR=$existing_log in $env_dest; change that file first"
	fi
	data_dir="${data_dir:-$existing_data}"
	log_dir="${log_dir:-$existing_log}"
fi
data_dir="${data_dir:-/var/lib/proctor}"
log_dir="${log_dir:-/var/log/proctor}"
check_path "the data directory" "$data_dir"
check_path "the log directory" "$log_dir"

info "checkout $APP_DIR, data $data_dir, logs $log_dir${root:+, below $root}$( ((dry)) && echo ' (dry run)')"

# --- 1. user -------------------------------------------------------------------------------------
if [[ -n "$root" ]]; then
	info "skipping the user '$USER_NAME' (--root)"
elif getent passwd "$USER_NAME" >/dev/null; then
	info "user '$USER_NAME' exists"
else
	act useradd --system --user-group --home-dir "$data_dir" --no-create-home \
		--shell /usr/sbin/nologin --comment "proctor exam backend" "$USER_NAME"
	((dry)) || info "created user '$USER_NAME'"
fi

# --- 2. directories ------------------------------------------------------------------------------
for dir in "$data_dir" "$data_dir/prometheus" "$log_dir"; do
	act mkdir -p "$root$dir"
	act chmod 0750 "$root$dir"
	[[ -n "$root" ]] || act chown "$USER_NAME:$USER_NAME" "$root$dir"
done
act mkdir -p "$root/etc/proctor"
act chmod 0750 "$root/etc/proctor"
[[ -n "$root" ]] || act chown "root:$USER_NAME" "$root/etc/proctor"

# --- 3. environment file -------------------------------------------------------------------------
if [[ -f "$env_dest" ]]; then
	info "keeping the existing $env_dest"
	[[ -n "$(env_file_value "$env_dest" PROCTOR_FLOWER_PASSWORD)" ]] ||
		warn "$env_dest has no PROCTOR_FLOWER_PASSWORD: proctor-flower will refuse to start"
	[[ -n "$(env_file_value "$env_dest" PROCTOR_ADMIN_TOKEN)" ]] ||
		warn "$env_dest has no PROCTOR_ADMIN_TOKEN: the token is generated into $data_dir/admin_token"
elif ((dry)); then
	printf '[dry-run] write %s from %s with a new PROCTOR_ADMIN_TOKEN and PROCTOR_FLOWER_PASSWORD\n' \
		"$env_dest" "$TEMPLATE_DIR/proctor.env.example"
else
	admin_token="$(random_secret)"
	flower_password="$(random_secret)"
	tmp="$(mktemp "$env_dest.XXXXXX")"
	chmod 0640 "$tmp"
	sed -e "s#^PROCTOR_ADMIN_TOKEN=\$#PROCTOR_ADMIN_TOKEN=$admin_token#" \
		-e "s#^PROCTOR_FLOWER_PASSWORD=\$#PROCTOR_FLOWER_PASSWORD=$flower_password#" \
		-e "s#^PROCTOR_DATA_DIR=.*#PROCTOR_DATA_DIR=$data_dir#" \
		-e "s#^PROCTOR_LOG_DIR=.*#PROCTOR_LOG_DIR=$log_dir#" \
		"$TEMPLATE_DIR/proctor.env.example" >"$tmp"
	if ! grep -q "^PROCTOR_ADMIN_TOKEN=$admin_token\$" "$tmp" ||
		! grep -q "^PROCTOR_FLOWER_PASSWORD=$flower_password\$" "$tmp"; then
		rm -f "$tmp"
		die "$TEMPLATE_DIR/proctor.env.example lacks the empty PROCTOR_ADMIN_TOKEN= / PROCTOR_FLOWER_PASSWORD= lines"
	fi
	[[ -n "$root" ]] || chown "root:$USER_NAME" "$tmp"
	# ln refuses to replace a file that appeared meanwhile: never overwrite an env file.
	if ln "$tmp" "$env_dest" 2>/dev/null; then
		info "wrote $env_dest with a generated admin token and Flower password"
	else
		warn "$env_dest appeared meanwhile; keeping it"
	fi
	rm -f "$tmp"
fi

# --- 4. virtualenv and tools ---------------------------------------------------------------------
if [[ -n "$root" ]]; then
	info "skipping .venv, packages and migrations (--root)"
elif ((dry)); then
	printf '[dry-run] ensure %s/.venv matches requirements.txt; install ffmpeg if missing\n' "$APP_DIR"
else
	ensure_packages ffmpeg || die "ffmpeg is missing"
	ensure_venv || die "could not set up $APP_DIR/.venv"
	command -v redis-server >/dev/null 2>&1 ||
		info "note: no redis-server here; REDIS_URL in $ENV_FILE must point to a Redis with appendonly yes"
fi

# --- 5. migrations -------------------------------------------------------------------------------
if [[ -z "$root" ]]; then
	if ((dry)); then
		printf '[dry-run] as %s with %s: %s/.venv/bin/alembic upgrade head\n' "$USER_NAME" "$ENV_FILE" "$APP_DIR"
	else
		info "database migrations: alembic upgrade head (as $USER_NAME)"
		(
			# Only the env file's settings, not those of this shell (lib.sh exported repo paths).
			while IFS= read -r name; do
				case "$name" in PATH | LANG | LC_* | TERM) ;; *) unset "$name" 2>/dev/null || true ;; esac
			done < <(compgen -e)
			load_env_file "$ENV_FILE"
			export PYTHONPATH="$APP_DIR" HOME="$data_dir"
			umask 0027 # as the units' UMask=: the database file is not world-readable
			cd "$APP_DIR"
			runuser -u "$USER_NAME" -- "$APP_DIR/.venv/bin/alembic" -c "$APP_DIR/alembic.ini" upgrade head
		) || die "database migrations failed (see above; check DATABASE_URL in $ENV_FILE)"
	fi
fi

# --- 6. units ------------------------------------------------------------------------------------
unit_dir="$root/etc/systemd/system"
act mkdir -p "$unit_dir"
for unit in "${UNITS[@]}"; do
	src="$TEMPLATE_DIR/$unit"
	[[ -f "$src" ]] || die "missing $src"
	if ((dry)); then
		printf '[dry-run] write %s/%s\n' "$unit_dir" "$unit"
		continue
	fi
	tmp="$(mktemp "$unit_dir/.$unit.XXXXXX")"
	# Via placeholders, so that one directory inside another is not replaced twice.
	sed -e 's#/opt/proctor#@APP_DIR@#g' -e 's#/var/lib/proctor#@DATA_DIR@#g' \
		-e 's#/var/log/proctor#@LOG_DIR@#g' "$src" |
		sed -e "s#@APP_DIR@#$APP_DIR#g" -e "s#@DATA_DIR@#$data_dir#g" -e "s#@LOG_DIR@#$log_dir#g" >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$unit_dir/$unit"
	info "installed $unit_dir/$unit"
done

if ! command -v systemctl >/dev/null 2>&1; then
	warn "systemctl not found: enable the units yourself (systemctl enable ${UNITS[*]})"
elif [[ -n "$root" ]]; then
	act systemctl --root="$root" enable "${UNITS[@]}"
else
	if [[ -d /run/systemd/system ]]; then
		act systemctl daemon-reload
	else
		info "systemd is not running here; enabling the units without reloading it"
	fi
	act systemctl enable "${UNITS[@]}"
fi

cat <<DONE

Done$( ((dry)) && echo ' (dry run: nothing was changed)').
  configuration  $ENV_FILE  (check REDIS_URL, DATABASE_URL, PROCTOR_BIND)
  start          systemctl start proctor.target
  status         systemctl status 'proctor-*'    logs in $log_dir
  Flower         user admin, password PROCTOR_FLOWER_PASSWORD in $ENV_FILE (loopback only)
DONE
