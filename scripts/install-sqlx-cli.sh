#!/usr/bin/env bash
# Installs sqlx-cli (`cargo sqlx prepare`: the offline query data of the compile-time checked
# SQL, .sqlx/) once into a cache and prints the path of its binary. Later runs find it there
# and return at once. Built from crates.io with its own lock file, PostgreSQL only.
set -euo pipefail

SQLX_CLI_VERSION=0.9.0
SQLX_CLI_HOME=${SQLX_CLI_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shop/sqlx-cli-$SQLX_CLI_VERSION}
bin="$SQLX_CLI_HOME/bin/cargo-sqlx"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v cargo >/dev/null || { echo "install-sqlx-cli.sh needs cargo" >&2; exit 1; }
echo "Installing sqlx-cli $SQLX_CLI_VERSION into $SQLX_CLI_HOME (a one-off build, a few minutes on 2 cores)..." >&2
cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked --no-default-features \
  --features postgres,rustls --root "$SQLX_CLI_HOME" >&2
echo "$bin"
