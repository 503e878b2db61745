#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-protocol broker in Rust) once into a cache and prints
# the path of its binary. Later runs find it there and return at once.
#
# Building it from source takes about 20 minutes on 2 cores. It needs the `libsql` feature
# for durable sqlite:// storage (and `dynostore` for memory://); without features it has no
# storage engine at all.
set -euo pipefail

TANSU_VERSION=0.6.0
TANSU_HOME=${TANSU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shop/tansu-$TANSU_VERSION}
bin="$TANSU_HOME/bin/tansu"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v cargo >/dev/null || { echo "cargo is required to build Tansu: install Rust from rustup.rs" >&2; exit 1; }
echo "Installing Tansu $TANSU_VERSION into $TANSU_HOME (a one-off build, about 20 minutes on 2 cores)..." >&2
build_dir=$(mktemp -d)
trap 'rm -rf "$build_dir"' EXIT
CARGO_TARGET_DIR="$build_dir" cargo install tansu --version "$TANSU_VERSION" --locked \
  --features dynostore,libsql --root "$TANSU_HOME" >&2
echo "$bin"
