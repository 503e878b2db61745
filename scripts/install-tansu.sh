#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-protocol broker in Rust) once into a cache and prints
# the path of its binary. Later runs find it there and return at once.
#
# Building it from source takes about 9 minutes on 2 cores (measured: docs/benchmarks.md, "The
# broker's build"). It needs the `libsql` feature for durable sqlite:// storage; without
# features it has no storage engine at all, and the project uses no other.
#
# Build settings that favour build time where the benchmark shows no loss: the crates on the
# broker's hot path (the protocol codec, storage, the broker and libsql) keep the release
# profile's opt-level 3; the command-line front end and the tools the binary also carries
# (generator, cat, proxy, perf, topic, and rhai, the generator's script engine) are built at
# opt-level 1. That took the `tansu` crate alone from 164 s to 25 s of a critical path that
# nothing else overlaps, with the broker's ceiling unchanged.
#
# Tansu 0.6.0 is built with the fixes in scripts/tansu/<crate>/*.patch applied to its crates (each
# patch says why); the cache directory carries a revision so a change of patches rebuilds it.
set -euo pipefail
shopt -s nullglob

TANSU_VERSION=0.6.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
patch_files=("$here"/tansu/*/*.patch)
features=libsql
build_settings=()
for crate in tansu tansu-cli tansu-generator tansu-cat tansu-proxy tansu-perf tansu-topic rhai; do
  build_settings+=(--config "profile.release.package.$crate.opt-level=1")
done
# The patches and the build settings name the build, so changing either can never reuse a
# stale broker.
revision=$({ cat "${patch_files[@]}"; echo "$features ${build_settings[*]}"; } | sha256sum | cut -c1-12)
TANSU_HOME=${TANSU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shop/tansu-$TANSU_VERSION-$revision}
bin="$TANSU_HOME/bin/tansu"

# --path: where the binary is (or will be), without building it.
if [ "${1:-}" = --path ]; then
  echo "$bin"
  exit 0
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

for tool in cargo curl tar patch sha256sum; do
  command -v "$tool" >/dev/null || { echo "install-tansu.sh needs $tool" >&2; exit 1; }
done
echo "Installing Tansu $TANSU_VERSION (build $revision) into $TANSU_HOME (a one-off build, about 9 minutes on 2 cores)..." >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each patched crate (scripts/tansu/<crate>/*.patch, same version as Tansu) replaces the
# published one through a [patch] table; --locked still pins every other dependency to Tansu's
# own lock file. A patch that does not apply exactly fails the install.
patches=()
for dir in "$here"/tansu/*/; do
  crate=$(basename "$dir")
  curl -sSfL "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate" | tar xz -C "$work"
  for fix in "$dir"*.patch; do
    patch --quiet --batch --forward --fuzz=0 -d "$work/$crate-$TANSU_VERSION" -p1 <"$fix"
  done
  patches+=(--config "patch.crates-io.$crate.path='$work/$crate-$TANSU_VERSION'")
done

# TANSU_BUILD_DIR keeps the build between runs (handy when working on the patches).
CARGO_TARGET_DIR="${TANSU_BUILD_DIR:-$work/target}" cargo install tansu --version "$TANSU_VERSION" \
  --locked --features "$features" --root "$TANSU_HOME" "${build_settings[@]}" "${patches[@]}" >&2
echo "$bin"
