# shellcheck shell=bash
# Shared set-up for scripts/demo and scripts/test. Source it; do not run it.
#
# Everything here is idempotent and installs only what is missing, so the
# newcomer commands work on a fresh Debian 12 machine and stay fast on a
# prepared one:
#   fg_apt PACKAGE...    Debian packages (apt-get update once, then install the missing)
#   fg_venv              .venv with `pip install -e '.[test]'` (redone when pyproject.toml changes)
#   fg_docker            a Docker engine that answers `docker info` (installs docker.io and
#                        starts dockerd in the background when none runs; log: .demo/dockerd.log)

FG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FG_VENV="$FG_ROOT/.venv"
FG_LOGS="$FG_ROOT/.demo"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$FG_LOGS"

fg_say() { printf '==> %s\n' "$*" >&2; }
fg_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run as root, through sudo when we are not root.
fg_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else fg_die "need root for: $* (run as root or install sudo)"
  fi
}

FG_APT_UPDATED=""
fg_apt() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || fg_die "missing ${missing[*]} and no apt-get to install them"
  if [ -z "$FG_APT_UPDATED" ]; then
    fg_say "apt-get update"
    fg_root apt-get update -qq >"$FG_LOGS/apt.log" 2>&1 || fg_die "apt-get update failed (see $FG_LOGS/apt.log)"
    FG_APT_UPDATED=1
  fi
  fg_say "installing ${missing[*]}"
  fg_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$FG_LOGS/apt.log" 2>&1 \
    || fg_die "apt-get install ${missing[*]} failed (see $FG_LOGS/apt.log)"
}

fg_venv() {
  local python stamp want
  python="$(command -v python3.11 || command -v python3 || true)"
  [ -n "$python" ] || { fg_apt python3; python="$(command -v python3)"; }
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fg_die "fleetgate needs Python 3.11 or newer ($python is older)"
  if [ ! -x "$FG_VENV/bin/python" ]; then
    # Debian ships venv's pip bootstrap separately.
    case "$python" in /usr/bin/*) command -v dpkg-query >/dev/null 2>&1 && fg_apt python3-venv ;; esac
    fg_say "creating $FG_VENV"
    "$python" -m venv "$FG_VENV" || fg_die "python -m venv failed"
  fi
  stamp="$FG_VENV/.fleetgate-installed"
  want="$(sha256sum "$FG_ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    fg_say "pip install -e '.[test]' (log: $FG_LOGS/pip.log)"
    "$FG_VENV/bin/python" -m pip install -q -e "$FG_ROOT[test]" >"$FG_LOGS/pip.log" 2>&1 \
      || { tail -n 20 "$FG_LOGS/pip.log" >&2; fg_die "pip install failed (see $FG_LOGS/pip.log)"; }
    echo "$want" >"$stamp"
  fi
  export PATH="$FG_VENV/bin:$PATH"
}

fg_docker_answers() { docker info >/dev/null 2>&1; }

fg_docker() {
  if command -v docker >/dev/null 2>&1 && fg_docker_answers; then return 0; fi
  if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
    fg_apt docker.io
  fi
  if ! { [ -r /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    fg_say "starting dockerd in the background (log: $FG_LOGS/dockerd.log)"
    # setsid: the engine outlives this script, like a service would. The default address
    # pools give ~30 bridge networks; the test suite and the benches create many more over
    # a run (each stack has its own), so this engine gets 256 /24 networks from 10.213/16.
    fg_root setsid dockerd --default-address-pool base=10.213.0.0/16,size=24 \
      >"$FG_LOGS/dockerd.log" 2>&1 < /dev/null &
  fi
  local i
  for i in $(seq 1 120); do
    fg_docker_answers && return 0
    sleep 0.5
  done
  tail -n 20 "$FG_LOGS/dockerd.log" >&2 || true
  fg_die "the Docker engine did not answer within 60s (see $FG_LOGS/dockerd.log)"
}
