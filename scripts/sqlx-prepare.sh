#!/usr/bin/env bash
# The offline data of the compile-time checked SQL (`sqlx::query!` and friends), in .sqlx/:
# the macros read it instead of a database (SQLX_OFFLINE=true, in .cargo/config.toml and the
# Dockerfile), so a build needs no PostgreSQL. After changing a query or a migration:
#
#   scripts/sqlx-prepare.sh           # rewrite .sqlx/ and commit it
#   scripts/sqlx-prepare.sh --check   # fail when .sqlx/ is stale (CI, from scripts/test.sh)
#   scripts/sqlx-prepare.sh -- --config x.toml   # extra arguments for the `cargo check` it runs
#
# The macros check every query against one scratch database holding every crate's tables:
# shop-runtime's migrations, then each service's own (no two services name a table alike).
# Needs PostgreSQL (POSTGRES_URL) and psql; installs sqlx-cli on first use (cached).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

check=()
if [ "${1:-}" = --check ]; then check=(--check); shift; fi
if [ "${1:-}" = -- ]; then shift; fi
extra=("$@")
require_postgres
command -v psql >/dev/null || die "scripts/sqlx-prepare.sh needs psql (Debian: postgresql-client)"
cargo_sqlx=$(scripts/install-sqlx-cli.sh)

# One scratch database per checkout, so two checkouts on one server cannot race.
db=shop_sqlx_$(printf '%s' "$root" | sha256sum | cut -c1-8)
admin="$POSTGRES_URL/postgres"
psql "$admin" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
trap 'psql "$admin" -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
for migration in runtime/migrations/*.sql services/*/migrations/*.sql; do
  psql "$POSTGRES_URL/$db" -qX -v ON_ERROR_STOP=1 -f "$migration" >/dev/null ||
    die "$migration does not apply"
done

say "cargo sqlx prepare --workspace ${check[*]}"
DATABASE_URL="$POSTGRES_URL/$db" SQLX_OFFLINE=false PATH="$(dirname "$cargo_sqlx"):$PATH" \
  cargo sqlx prepare --workspace "${check[@]}" -- --all-targets --locked "${extra[@]}"
