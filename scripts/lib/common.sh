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

# A TCP port on 127.0.0.1 that nothing listens on now, not among the arguments (ports already
# chosen). Below Linux's ephemeral range (32768+), so no outgoing connection holds it; another
# process may still take it before it is used.
free_port() {
  local port taken
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    for taken in "$@"; do [ "$port" = "$taken" ] && continue 2; done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
  done
  die "no free TCP port found on 127.0.0.1"
}

# Waits until something accepts connections on 127.0.0.1:$1, for at most $2 seconds.
wait_for_port() {
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}
