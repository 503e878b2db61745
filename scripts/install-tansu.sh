#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-protocol broker in Rust) once into a cache and prints
# the path of its binary. Later runs find it there and return at once.
#
# Building it from source takes about 25 minutes on 2 cores. It needs the `libsql` feature
# for durable sqlite:// storage (and `dynostore` for memory://); without features it has no
# storage engine at all.
#
# Tansu 0.6.0 is built with the fixes in scripts/tansu/<crate>/*.patch applied to its crates (each
# patch says why); the cache directory carries a revision so a change of patches rebuilds it.
set -euo pipefail

TANSU_VERSION=0.6.0
PATCH_REVISION=shop2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TANSU_HOME=${TANSU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shop/tansu-$TANSU_VERSION-$PATCH_REVISION}
bin="$TANSU_HOME/bin/tansu"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

for tool in cargo curl tar patch; do
  command -v "$tool" >/dev/null || { echo "install-tansu.sh needs $tool" >&2; exit 1; }
done
echo "Installing Tansu $TANSU_VERSION ($PATCH_REVISION) into $TANSU_HOME (a one-off build, about 25 minutes on 2 cores)..." >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each patched crate (scripts/tansu/<crate>/*.patch) replaces the published one through a
# [patch] table; --locked still pins every other dependency to Tansu's own lock file.
patches=()
for dir in "$here"/tansu/*/; do
  crate=$(basename "$dir")
  curl -sSfL "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate" | tar xz -C "$work"
  for fix in "$dir"*.patch; do
    patch --quiet -d "$work/$crate-$TANSU_VERSION" -p1 <"$fix"
  done
  patches+=(--config "patch.crates-io.$crate.path=\"$work/$crate-$TANSU_VERSION\"")
done

# TANSU_BUILD_DIR keeps the build between runs (handy when working on the patches).
CARGO_TARGET_DIR="${TANSU_BUILD_DIR:-$work/target}" cargo install tansu --version "$TANSU_VERSION" \
  --locked --features dynostore,libsql --root "$TANSU_HOME" "${patches[@]}" >&2
echo "$bin"
