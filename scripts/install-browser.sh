#!/usr/bin/env bash
# What the dashboard's browser check (e2e/tests/dashboard.rs) needs: Debian's Chromium and
# playwright-core from npm (e2e/browser/package-lock.json). Installs what is missing; a second
# run takes a second.
#
#   scripts/install-browser.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  [ "$(id -u)" -eq 0 ] || die "Chromium is missing; install Debian's package: sudo apt-get install chromium"
  say "installing Chromium (Debian package)"
  log="${XDG_CACHE_HOME:-$HOME/.cache}/shop/apt-chromium.log"
  mkdir -p "$(dirname "$log")"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    die "installing Chromium failed"
  fi
fi
command -v node >/dev/null || die "Node.js is missing (20 or later): it runs the browser check"
if [ ! -d e2e/browser/node_modules/playwright-core ]; then
  say "npm ci (e2e/browser)"
  npm ci --prefix e2e/browser --no-audit --no-fund --silent
fi
