#!/usr/bin/env bash
# Debian's Chromium for the JupyterLab browser test (tests/integration/test_jupyterlab_browser.py),
# which Playwright drives through its executable_path: no browser is ever downloaded.
# Idempotent: with chromium in place it prints the version and returns at once.
#   scripts/install-chromium.sh
set -euo pipefail

say() { echo "[install-chromium] $*"; }
die() { echo "install-chromium: error: $*" >&2; exit 1; }

# The Debian wrapper script warns on stderr about its memory arithmetic; only the version matters.
version() { chromium --version 2>/dev/null | head -n 1; }

if command -v chromium >/dev/null 2>&1 && [ -n "$(version)" ]; then
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "chromium is missing: run as root or install sudo (apt-get install chromium)"
  SUDO=sudo
fi
command -v apt-get >/dev/null 2>&1 || die "chromium is missing and there is no apt-get: install Chromium by hand"
say "installing chromium from Debian's packages (first run only)"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
[ -n "$(version)" ] || die "the chromium package installed no working chromium"
say "$(version)"
