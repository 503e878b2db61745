#!/usr/bin/env bash
# Validates contract/asyncapi.json, the events' AsyncAPI document, with the AsyncAPI
# initiative's own parser (@asyncapi/parser from npm, pinned by
# contract/asyncapi-check/package-lock.json): the specification's schema and its rules. That
# the document matches the Rust types, and the golden files match it, is checked by
# `cargo test -p shop-contract` (contract/tests/asyncapi.rs). Needs Node.js 20 or newer.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

checker=contract/asyncapi-check
command -v node >/dev/null || die "checking the AsyncAPI document needs Node.js 20 or newer"
if [ ! -d "$checker/node_modules/@asyncapi/parser" ]; then
  say "npm ci ($checker)"
  npm ci --prefix "$checker" --no-audit --no-fund --silent
fi
say "AsyncAPI: contract/asyncapi.json"
node "$checker/check.mjs" contract/asyncapi.json
