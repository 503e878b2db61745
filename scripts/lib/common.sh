# Shared by the scripts: where things are, and the one PostgreSQL check with its advice.
# shellcheck shell=bash

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The server every service's database lives on; the scripts add the database name.
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# host and port of a postgres:// URL, for a reachability check that needs no client tools.
postgres_host_port() {
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  local host=${rest%%:*} port=5432
  [ "$rest" != "$host" ] && port=${rest##*:}
  echo "$host" "$port"
}

require_postgres() {
  local host port
  read -r host port < <(postgres_host_port "$POSTGRES_URL")
  if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    cat >&2 <<MSG
error: PostgreSQL is not reachable at $host:$port.
  The services keep their data in PostgreSQL (one database per service, created on start).
  Either start a local server, e.g. on Debian/Ubuntu:
      sudo apt-get install postgresql && sudo service postgresql start
      sudo -u postgres psql -c "ALTER USER postgres PASSWORD 'postgres'"   # or trust auth
  or point the scripts at one you have:
      export POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT
MSG
    exit 1
  fi
}
