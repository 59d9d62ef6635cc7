#!/usr/bin/env bash
# Debian's Chromium for the browser tests (make e2e-browser): nothing to do when /usr/bin/chromium is there.
# apt-get update only when the install fails without it (a fresh machine's package lists may be stale).
# No browser is ever downloaded by a driver: Playwright only launches this executable.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
install() { $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
if ! install; then
  echo "chromium: install failed with the current package lists; running apt-get update and retrying" >&2
  $SUDO apt-get update -qq
  install
fi
test -x "$CHROMIUM" || { echo "chromium: $CHROMIUM still missing after the install" >&2; exit 1; }
echo "chromium: installed $("$CHROMIUM" --version 2>/dev/null) in $(( $(date +%s) - start )) s"
