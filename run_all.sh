#!/usr/bin/env bash
# One entry point: set-up on a fresh machine, stack control, the lab run and the tests.
# ./run_all.sh help lists the commands.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: python3 not found: install Python 3.10+ (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi

# Each requirements file is (re)installed when its content changes; a stamp per file records it.
install() {
  local req=$1 stamp
  stamp="$VENV/.installed-$req-$(cat requirements*.txt | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating the virtualenv in $VENV"
    "$PY" -m venv "$VENV" || { echo "error: '$PY -m venv' failed: install python3-venv" >&2; exit 1; }
  fi
  echo "[setup] installing $req into $VENV (first run only; about a minute)"
  "$VENV/bin/pip" install --disable-pip-version-check -q --progress-bar off -r "$req"
  rm -f "$VENV/.installed-$req-"*
  touch "$stamp"
}
install requirements.txt
# The command is the first word that is not an option (--compose and --brokers N may come first).
command_word() {
  while [ $# -gt 0 ]; do
    case "$1" in --brokers) shift 2 ;; -*) shift ;; *) echo "$1"; return ;; esac
  done
}
if [ "$(command_word "$@")" = test ]; then
  install requirements-dev.txt
  # The container tests need Docker Engine and Compose v2: set up (or just started) here,
  # idempotent and instant once in place. Where the daemon cannot start they skip, naming why.
  if [ -z "${LAB_DOCKER_UNAVAILABLE:-}" ] && ! log=$(scripts/install-docker.sh 2>&1); then
    export LAB_DOCKER_UNAVAILABLE="scripts/install-docker.sh failed: $(printf '%s\n' "$log" | tail -n 1)"
    echo "[setup] Docker tests will be skipped: $LAB_DOCKER_UNAVAILABLE" >&2
  elif [ -n "${log:-}" ]; then
    printf '%s\n' "$log" | grep -v '^go: downloading' || true
  fi
  # Debian's Chromium for the JupyterLab browser test (Playwright drives it; it downloads no
  # browser): instant once installed. Where it cannot be installed that test skips, naming why.
  if [ -z "${LAB_CHROMIUM_UNAVAILABLE:-}" ] && ! chromium_log=$(scripts/install-chromium.sh 2>&1); then
    export LAB_CHROMIUM_UNAVAILABLE="scripts/install-chromium.sh failed: $(printf '%s\n' "$chromium_log" | tail -n 1)"
    echo "[setup] the browser test will be skipped: $LAB_CHROMIUM_UNAVAILABLE" >&2
  elif [ -n "${chromium_log:-}" ]; then
    printf '%s\n' "$chromium_log"
  fi
fi

exec "$VENV/bin/python" -m lab.cli "$@"
