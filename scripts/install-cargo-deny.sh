#!/usr/bin/env bash
# Installs cargo-deny (checks the dependency tree's licences, duplicate crates and sources
# against deny.toml) once into a cache and prints the path of its binary. Later runs find it
# there and return at once.
#
# Built from crates.io with the lock file it is published with (--locked): 3 minutes 45 seconds
# on 2 cores (measured, with another build sharing the machine).
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
CARGO_DENY_HOME=${CARGO_DENY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shop/cargo-deny-$CARGO_DENY_VERSION}
bin="$CARGO_DENY_HOME/bin/cargo-deny"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v cargo >/dev/null || { echo "install-cargo-deny.sh needs cargo" >&2; exit 1; }
echo "Installing cargo-deny $CARGO_DENY_VERSION into $CARGO_DENY_HOME (a one-off build, about 4 minutes on 2 cores)..." >&2
cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$CARGO_DENY_HOME" >&2
echo "$bin"
