#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, the dependencies' licences and sources,
# lints, the compose file, a smoke run of the benchmark, then every test: unit, router and
# end-to-end against a real Tansu broker and the local PostgreSQL.
#
#   scripts/test.sh                    # everything
#   scripts/test.sh -E 'test(replay)'  # extra arguments go to cargo nextest
#
# Needs PostgreSQL (127.0.0.1:5432, or POSTGRES_URL). Installs Tansu and cargo-deny on first
# use (cached).
# With a Docker engine, the end-to-end tests use testcontainers instead (SHOP_E2E_BACKEND).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo deny check licenses bans sources"
# The dependency tree's licences, duplicate crates and sources, against deny.toml. Not
# advisories: cargo-deny fetches the RustSec database from GitHub, which CI cannot reach.
"$(scripts/install-cargo-deny.sh)" --locked check licenses bans sources

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "docker-compose.yml (offline validation)"
scripts/check-compose.sh

say "k8s/ manifests (offline validation)"
scripts/check-k8s.sh

say "contract/asyncapi.json (the AsyncAPI initiative's parser)"
scripts/check-asyncapi.sh

require_postgres
export SHOP_TEST_POSTGRES_URL=${SHOP_TEST_POSTGRES_URL:-$POSTGRES_URL}
export DATABASE_URL=${DATABASE_URL:-$POSTGRES_URL/postgres}
# Databases an interrupted run left behind: each test names its own e2e_<random>_<service>.
if command -v psql >/dev/null; then
  psql "$POSTGRES_URL/postgres" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'e2e\_%'" 2>/dev/null |
    while read -r db; do psql "$POSTGRES_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done || true
fi

TANSU_BIN=$(scripts/install-tansu.sh)
export TANSU_BIN
# The OpenAPI contract test (e2e/tests/openapi_contract.rs) generates requests with it.
SCHEMATHESIS_BIN=$(scripts/install-schemathesis.sh)
export SCHEMATHESIS_BIN

# The dashboard's test drives a real headless Chromium.
scripts/install-browser.sh

# The compile-time checked SQL's offline data (.sqlx/) must be what the queries and the
# migrations make: a query changed without `scripts/sqlx-prepare.sh` fails here.
scripts/sqlx-prepare.sh --check

say "cargo build --workspace --bins"
# The crash tests (e2e/tests/crashes.rs) run these binaries as separate processes; built up
# front, the build is not counted against a test's time-out.
cargo build --workspace --bins --locked

say "scripts/bench.sh --smoke"
# Every step of the benchmark with tiny counts and the debug build, in seconds: proves the
# tools and the script still work end to end. It asserts no timings. Before the tests, so the
# test runner's summary is the last thing printed.
scripts/bench.sh --smoke

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
