#!/usr/bin/env bash
# Runs the whole shop on this machine, no Docker: a Tansu broker (durable sqlite storage
# under the data dir), then the Order Service and the four consumer services against the
# local PostgreSQL, and the dashboard (http://127.0.0.1:8088), their logs interleaved in this
# terminal. Ctrl-C stops everything.
#
#   scripts/run-local.sh                           # one instance of each service
#   scripts/run-local.sh --scale inventory=2       # two inventory instances share the partitions
#   scripts/run-local.sh --release --data-dir /tmp/shop
#   scripts/run-local.sh --secure                  # Kafka over TLS with a SCRAM user per service,
#                                                  # PostgreSQL over TLS where the server has it
#
# Instance N of a service listens on its port + 100*(N-1): inventory 8081, 8181, 8281...
# Environment: POSTGRES_URL (default postgres://postgres@127.0.0.1:5432), KAFKA_PORT (9092),
# SMTP_URL (unset: mail goes to DATA_DIR/mail as .eml files), RUST_LOG.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

services=(order-service inventory-service payment-service email-service analytics-service)
declare -A port=([order-service]=8080 [inventory-service]=8081 [payment-service]=8082 [email-service]=8083 [analytics-service]=8084)
declare -A database=([order-service]=orders [inventory-service]=inventory [payment-service]=payments [email-service]=email [analytics-service]=analytics)
declare -A instances=()
for service in "${services[@]}"; do instances[$service]=1; done
profile=debug
data_dir=.data
kafka_port=${KAFKA_PORT:-9092}

secure=false
usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --scale)
      [ $# -ge 2 ] || usage 1
      name=${2%%=*}; count=${2#*=}
      name=${name%-service}-service
      [ -n "${port[$name]:-}" ] || die "--scale $2: no service called ${2%%=*} (one of: ${services[*]%-service})"
      [[ $count =~ ^[1-6]$ ]] || die "--scale $2: instances must be 1 to 6 (orders has 6 partitions)"
      instances[$name]=$count; shift 2 ;;
    --release) profile=release; shift ;;
    --secure) secure=true; shift ;;
    --data-dir) [ $# -ge 2 ] || usage 1; data_dir=$2; shift 2 ;;
    -h|--help) usage ;;
    *) printf 'unknown argument: %s\n\n' "$1" >&2; usage 1 ;;
  esac
done

require_postgres
(exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null &&
  die "port $kafka_port is taken (another broker?): stop it or set KAFKA_PORT"

tansu=$(scripts/install-tansu.sh)
say "building the services ($profile)"
# Every binary of the workspace, not only those run here: the same build as `cargo build
# --workspace --bins` (scripts/test.sh, bench.sh), with the same features, so each reuses the
# other's instead of compiling part of the dependencies again.
build=(cargo build --locked --workspace --bins)
[ "$profile" = release ] && build+=(--release)
"${build[@]}"

mkdir -p "$data_dir/tansu" "$data_dir/mail"
data_dir=$(cd "$data_dir" && pwd)
pids=()
tansu_dir=$data_dir/tansu
kafka_host=127.0.0.1
# Each process's Kafka connection: nothing locally, TLS and its own SCRAM user with --secure.
kafka_env() { :; }
if $secure; then
  # shellcheck source=lib/secure.sh
  source scripts/lib/secure.sh
  secure_dir=$data_dir/secure
  # Users live in the broker's storage: a secured broker keeps its own.
  tansu_dir=$data_dir/tansu-secure
  kafka_host=localhost
  mkdir -p "$tansu_dir"
  secure_certificates "$secure_dir"
  secure_passwords "$secure_dir" "${services[@]}" dashboard shop-dlt admin
  secure_bootstrap_broker "$tansu" "$tansu_dir" "$kafka_port" "$secure_dir" "${services[@]}" dashboard shop-dlt admin
  kafka_env() {
    printf '%s\n' KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
      "KAFKA_SASL_USERNAME=$1" "KAFKA_SASL_PASSWORD_FILE=$secure_dir/$1.password" \
      "KAFKA_SSL_CA_LOCATION=$secure_dir/ca.crt" KAFKA_CREATE_TOPICS=false
  }
  postgres_tls=$(secure_postgres_url_options "$POSTGRES_URL")
fi

# True while the process runs (an exited child stays a zombie until it is waited for).
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

all_alive() {
  local pid
  for pid in "${pids[@]}"; do running "$pid" || return 1; done
}

# SIGTERM to each of the given processes, SIGKILL to those still running after $1 seconds.
terminate() {
  local grace=$1 pid deadline
  shift
  kill -TERM "$@" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  for pid in "$@"; do
    while running "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  done
  for pid in "$@"; do
    running "$pid" && { echo "pid $pid did not stop within ${grace}s: SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null; }
  done
  return 0
}

stop_all() {
  trap - EXIT
  # Nothing may end the clean-up before the broker, which no Ctrl-C reaches, is stopped. With
  # the output piped (`run-local.sh 2>&1 | tee run.log`), Ctrl-C ends tee as well: a message
  # written to its pipe raises SIGPIPE, which would kill the script, and with SIGPIPE ignored
  # the failed write would end it through `set -e`. Writes to a closed terminal (SIGHUP) fail
  # too. So a message nobody can read is dropped, the clean-up goes on, and a hang-up during
  # it changes nothing.
  trap '' PIPE HUP
  set +e
  # A second Ctrl-C does not wait: everything, broker included, is killed at once.
  trap 'echo "stopping now (SIGKILL)" >&2; kill -KILL "${pids[@]}" 2>/dev/null; exit 130' INT TERM
  say "stopping (SIGTERM: each service finishes the event in hand, commits and leaves its group)"
  # Services first, so they can commit their offsets while the broker is still there.
  if [ ${#pids[@]} -gt 1 ]; then terminate 15 "${pids[@]:1}"; fi
  if [ ${#pids[@]} -gt 0 ]; then terminate 10 "${pids[0]}"; fi
  wait 2>/dev/null || true
  say "stopped"
}
trap stop_all INT TERM HUP EXIT

# Prefixes every line with the process's name, in a colour of its own. Ctrl-C reaches the
# whole foreground process group; the labelling must outlive it, to show the services'
# shutdown and so that they never write to a pipe nobody reads.
colours=(36 33 32 35 34 31 96 93 92 95)
label() {
  local name=$1 colour=${colours[$2 % ${#colours[@]}]}
  trap '' INT
  sed -u "s/^/$(printf '\033[%sm%-20s\033[0m' "$colour" "$name") /"
}

broker_args=(--listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://$kafka_host:$kafka_port"
  --storage-engine sqlite://tansu.db)
$secure && broker_args+=(--authentication --cert "$secure_dir/broker.crt" --key "$secure_dir/broker.key")
say "starting Tansu on $kafka_host:$kafka_port (data: $tansu_dir/tansu.db)$($secure && echo ', TLS and SASL/SCRAM')"
# In a session of its own, so Ctrl-C reaches only the services: the broker must outlive them
# while they commit their offsets and leave their groups; stop_all stops it last.
( cd "$tansu_dir" && exec setsid "$tansu" broker "${broker_args[@]}" ) > >(label tansu 0) 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.1; done

# The service's database URL: over TLS, verifying the server, with --secure when the server
# has TLS (a local Debian PostgreSQL does, with its "snakeoil" certificate for localhost).
database_url() {
  if [ -n "${postgres_tls:-}" ]; then
    echo "${postgres_tls%%\?*}/$1?${postgres_tls#*\?}"
  else
    echo "$POSTGRES_URL/$1"
  fi
}

n=1
urls=()
for service in "${services[@]}"; do
  for i in $(seq "${instances[$service]}"); do
    http_port=$(( ${port[$service]} + 100 * (i - 1) ))
    mapfile -t extra < <(kafka_env "$service")
    env "${extra[@]}" \
    "KAFKA_BOOTSTRAP_SERVERS=$kafka_host:$kafka_port" \
    "DATABASE_URL=$(database_url "${database[$service]}")" \
    "HTTP_ADDR=127.0.0.1:$http_port" \
    "INSTANCE_ID=${service%-service}-$i" \
    "MAIL_DIR=$data_dir/mail" \
      "target/$profile/$service" > >(label "${service%-service}-$i" "$n") 2>&1 &
    pids+=($!)
    urls+=("$(printf '%-22s http://127.0.0.1:%s' "${service%-service}-$i" "$http_port")")
    n=$((n + 1))
  done
done

# Reads the instances' heartbeats and the orders' events from Kafka; places orders through the
# Order Service.
mapfile -t extra < <(kafka_env dashboard)
env "${extra[@]}" \
"KAFKA_BOOTSTRAP_SERVERS=$kafka_host:$kafka_port" \
HTTP_ADDR=127.0.0.1:8088 \
"ORDER_SERVICE_URL=http://127.0.0.1:${port[order-service]}" \
INSTANCE_ID=dashboard \
  "target/$profile/dashboard" > >(label dashboard "$n") 2>&1 &
pids+=($!)
urls+=("$(printf '%-22s http://127.0.0.1:%s' dashboard 8088)")

for url in "${urls[@]}"; do
  for _ in $(seq 600); do
    curl -fs "${url##* }/readyz" >/dev/null 2>&1 && break
    all_alive || die "a process exited during start-up; see its log above"
    sleep 0.1
  done
done

cat >&2 <<MSG

$(printf '\033[1m')shop is running$(printf '\033[0m'). Ctrl-C stops everything.
$(printf '  %s\n' "${urls[@]}")

  Open the dashboard, http://127.0.0.1:8088, to watch the groups; every service's API is
  described at /openapi.json and browsable at /docs.

  curl -s localhost:8080/products
  curl -si -X POST localhost:8080/orders -H 'content-type: application/json' \\
       -d '{"customer_id":"cust-1","customer_email":"ada@example.com","items":[{"sku":"KB-001","quantity":2}]}'
  curl -s localhost:8081/stock; curl -s localhost:8082/payments; curl -s localhost:8083/emails; curl -s localhost:8084/stats
  curl -s localhost:8081/assignment        # which partitions this instance holds
$($secure && printf '\n  Secured: Kafka at %s over TLS (CA %s), a SCRAM user per service\n  (passwords in %s/<user>.password); PostgreSQL %s.\n  shop-dlt as its own user:  %s\n' \
  "$kafka_host:$kafka_port" "$secure_dir/ca.crt" "$secure_dir" \
  "$([ -n "${postgres_tls:-}" ] && echo 'over TLS (verify-full)' || echo 'without TLS (the server has ssl off)')" \
  "$(kafka_env shop-dlt | sed 's/ *$//' | tr '\n' ' ')KAFKA_BOOTSTRAP_SERVERS=$kafka_host:$kafka_port cargo run -p shop-dlt -- list")
MSG
wait
