#!/usr/bin/env bash
# Measures the shop on this machine in one run, from fresh data, and prints one table against
# the targets (docs/benchmarks.md says what each figure means):
#   the broker's own ceilings (shop-ceiling, on brokers of their own: order_placed fanned out to
#   four groups, and every record of a confirmed order's saga), then, against a
#   fresh broker and fresh databases, with the five services' release binaries:
#   (b) each group's backlog drain rate (a backlog built while the consumers are not running),
#   (a) the most orders/s completed end to end (in all four services),
#   (c) latency at 100 and 1,000 orders/s, hop by hop, (d) each service's peak memory;
#   (e) what TLS and SCRAM cost: the ceiling again, on a broker that speaks only TLS, as a
#   SCRAM-SHA-512 user, beside the plaintext one, with the broker's and the client's CPU time;
#   (f) the CPU time per order of every process during (a) (each service, the broker,
#   PostgreSQL, the load generator); (g) the orders stored per second with four times more
#   clients than HTTP_MAX_IN_FLIGHT, against as many (needs wrk); (h) a soak: minutes at a
#   steady rate, with the Order Service's memory at its start and end.
#
#   scripts/bench.sh                        # the full run (many minutes while the services are slow)
#   scripts/bench.sh --smoke                # tiny counts, debug build: proves it runs end to end
#   scripts/bench.sh --backlog 200000 --duration 60s --keep
#
# Options: --backlog N (100000) events for (b); --duration D (30s) of (a); --latency-duration D
# (20s) of each rate in (c); --ceiling-records N (100000); --keep keeps the logs and raw JSON;
# --bin-dir DIR measures the binaries in DIR (another commit's build, say) instead of building;
# --soak D (3m; 0 skips it) of (h), at --soak-rate R orders/s (100).
# Environment: POSTGRES_URL (default postgres://postgres@127.0.0.1:5432), RUST_LOG for the
# services, TANSU_BIN for another broker build. Needs jq and curl; psql to drop the databases.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$root"

smoke=false
backlog=100000
max_duration=30s
latency_duration=20s
ceiling_records=100000
keep=false
bin_dir=""
soak=3m
soak_rate=100
usage() { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=true; shift ;;
    --backlog) [ $# -ge 2 ] || usage 1; backlog=$2; shift 2 ;;
    --duration) [ $# -ge 2 ] || usage 1; max_duration=$2; shift 2 ;;
    --latency-duration) [ $# -ge 2 ] || usage 1; latency_duration=$2; shift 2 ;;
    --ceiling-records) [ $# -ge 2 ] || usage 1; ceiling_records=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    --soak) [ $# -ge 2 ] || usage 1; soak=$2; shift 2 ;;
    --soak-rate) [ $# -ge 2 ] || usage 1; soak_rate=$2; shift 2 ;;
    --bin-dir) [ $# -ge 2 ] || usage 1; bin_dir=$(cd "$2" && pwd) || die "--bin-dir $2: no such directory"; shift 2 ;;
    -h|--help) usage ;;
    *) printf 'unknown argument: %s\n\n' "$1" >&2; usage 1 ;;
  esac
done
profile=release
if $smoke; then
  # Enough to go through every step, not to measure anything.
  profile=debug backlog=200 max_duration=1s latency_duration=0.3s ceiling_records=500 soak=2s
fi
[[ $backlog =~ ^[1-9][0-9]*$ ]] || die "--backlog $backlog: expected a positive number"
[[ $ceiling_records =~ ^[1-9][0-9]*$ ]] || die "--ceiling-records $ceiling_records: expected a positive number"
for tool in jq curl; do command -v "$tool" >/dev/null || die "bench.sh needs $tool"; done
require_postgres
began=$SECONDS

services=(order-service inventory-service payment-service email-service analytics-service)
consumers=(inventory-service payment-service email-service analytics-service)
declare -A database=([order-service]=orders [inventory-service]=inventory [payment-service]=payments [email-service]=email [analytics-service]=analytics)
run_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
db_prefix=bench_${run_id}_
work=$(mktemp -d "${TMPDIR:-/tmp}/shop-bench.XXXXXX")
mkdir -p "$work/logs"
declare -A pid=()  # process name -> pid, each the leader of its own process group
declare -A broker_cpu=()  # ceiling run -> the broker's CPU seconds
# shellcheck source=lib/secure.sh
source scripts/lib/secure.sh
failed=false

# Stops a process and everything it started: SIGTERM to its group, SIGKILL after 10 s.
stop() {
  local name=$1 p=${pid[$1]:-}
  [ -n "$p" ] || return 0
  unset "pid[$name]"
  kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

drop_databases() {
  command -v psql >/dev/null || { echo "psql not found: drop the databases ${db_prefix}* by hand" >&2; return 0; }
  psql "$POSTGRES_URL/postgres" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE '${db_prefix}%'" 2>/dev/null |
    while read -r db; do psql "$POSTGRES_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done || true
}

cleanup() {
  local status=$?
  trap - INT TERM EXIT
  # Services first, so they leave their groups while the broker is still there.
  for name in "${services[@]}"; do stop "$name"; done
  for name in "${!pid[@]}"; do stop "$name"; done
  drop_databases
  if $keep || [ "$status" != 0 ] || $failed; then
    echo "logs and raw figures kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a command in a session (and process group) of its own, logging to logs/<name>.log.
# The subshell execs setsid, which execs the command: the pid stays the command's.
start() {
  local name=$1; shift
  ( exec setsid "$@" ) >"$work/logs/$name.log" 2>&1 &
  pid[$name]=$!
}

alive() { kill -0 "${pid[$1]}" 2>/dev/null; }

fail_with_log() {
  tail -n 20 "$work/logs/$1.log" >&2 || true
  die "$2 (log: $work/logs/$1.log)"
}

# A fresh Tansu with sqlite storage in a directory of its own, on a free port: sets $port.
# (Not a $(function): that would run in a subshell and lose track of the process.) With
# `secure`: TLS only (a certificate for localhost, made in $work/secure) and SCRAM users.
start_tansu() {
  local name=$1 mode=${2:-plain} host=127.0.0.1 tls=""
  port=$(free_port "${ports[@]}")
  ports+=("$port")
  mkdir -p "$work/$name"
  if [ "$mode" = secure ]; then
    secure_certificates "$work/secure"
    secure_passwords "$work/secure" admin
    secure_bootstrap_broker "$tansu" "$work/$name" "$port" "$work/secure" admin
    host=localhost
    tls="--authentication --cert '$work/secure/broker.crt' --key '$work/secure/broker.key'"
  fi
  # Tansu resolves the sqlite path against its working directory.
  start "$name" bash -c "cd '$work/$name' && exec '$tansu' broker \
    --listener-url tcp://127.0.0.1:$port --advertised-listener-url tcp://$host:$port \
    --storage-engine sqlite://tansu.db $tls"
  wait_for_port "$port" 30 && alive "$name" || fail_with_log "$name" "Tansu did not start"
}

# CPU seconds (user + system) a running process has used so far, from /proc.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo -
}

# CPU seconds all of PostgreSQL's processes have used so far: the live ones (postmaster,
# backends, background workers) plus what the postmaster reaped from backends that exited.
# "-" when PostgreSQL does not run on this machine.
postgres_cpu_seconds() {
  local pids
  pids=$(pgrep -x postgres 2>/dev/null) || { echo -; return; }
  # shellcheck disable=SC2086
  (cd /proc && cat $(printf '%s/stat ' $pids) 2>/dev/null) |
    awk -v hz="$(getconf CLK_TCK)" '{ comm_end = index($0, ") "); split(substr($0, comm_end + 2), f, " ")
      # f[1] is the state, f[2] the parent; utime stime cutime cstime are f[12..15].
      total += f[12] + f[13]; parent[$1] = f[2]; reaped[$1] = f[14] + f[15] }
      END { for (p in parent) if (!(parent[p] in parent)) total += reaped[p]; printf "%.2f", total / hz }'
}

# The CPU seconds of every process of the services' run, as "name seconds" lines.
cpu_snapshot() {
  local name
  for name in "${services[@]}"; do echo "$name $(cpu_seconds "${pid[$name]}")"; done
  echo "broker $(cpu_seconds "${pid[tansu]}")"
  echo "postgresql $(postgres_cpu_seconds)"
}

# Every service's consumer_event_age_seconds buckets, as "service event_type le count" lines.
hop_snapshot() {
  local service
  for service in "${services[@]}"; do
    curl -fs "http://127.0.0.1:${http_port[$service]}/metrics" 2>/dev/null |
      awk -v s="$service" '/_consumer_event_age_seconds_bucket\{/ {
        match($0, /event_type="[^"]*"/); type = substr($0, RSTART + 12, RLENGTH - 13)
        match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
        print s, type, le, $NF }'
  done
}

# The p50 and p99 bucket bounds (ms) of one hop between two hop snapshots: the events of the
# given types handled by the given services, pooled. Prints "p50 / p99", "-" when none.
hop_quantiles() {
  local before=$1 after=$2 services=$3 types=$4
  join -a 2 -e 0 -o '0,1.2,2.2' <(awk '{ print $1 "|" $2 "|" $3, $4 }' "$before" | sort) \
    <(awk '{ print $1 "|" $2 "|" $3, $4 }' "$after" | sort) |
    awk -v services=" $services " -v types=" $types " '{
        split($1, k, "|")
        if (index(services, " " k[1] " ") && index(types, " " k[2] " ")) {
          le = (k[3] == "+Inf") ? 1e12 : k[3]; count[le] += $3 - $2 }
      }
      END {
        n = 0; for (le in count) bounds[++n] = le + 0
        for (i = 2; i <= n; i++) { v = bounds[i]; for (j = i - 1; j >= 1 && bounds[j] > v; j--) bounds[j + 1] = bounds[j]; bounds[j + 1] = v }
        total = n ? count[bounds[n]] : 0
        if (total == 0) { print "-"; exit }
        for (i = 1; i <= n; i++) {
          if (p50 == "" && count[bounds[i]] >= 0.5 * total) p50 = bounds[i]
          if (p99 == "" && count[bounds[i]] >= 0.99 * total) p99 = bounds[i]
        }
        show = "%s / %s"
        printf show "\n", (p50 >= 1e12 ? ">max" : "≤" p50 * 1000), (p99 >= 1e12 ? ">max" : "≤" p99 * 1000)
      }'
}

# Runs a tool as run_tool does, and records its CPU time (its own and its children's, as
# bash's `times` reports them) in $work/<name>.cpu.
run_timed() {
  local name=$1; shift
  run_tool "$name" bash -c '"$@"; status=$?; times >&3; exit $status' _ "$@" 3>"$work/$name.times" || return $?
  awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); sub(/s/, "", u[2]); sub(/s/, "", s[2]);
       printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/$name.times" >"$work/$name.cpu"
}

start_service() {
  local service=$1
  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port \
  DATABASE_URL=$POSTGRES_URL/$db_prefix${database[$service]} \
  HTTP_ADDR=127.0.0.1:${http_port[$service]} \
  INSTANCE_ID=${service%-service}-bench \
  MAIL_DIR=$work/mail \
  INVENTORY_INITIAL_STOCK=100000000 \
  SAGA_TIMEOUT_SECS=86400 \
    start "$service" "$bin/$service"
}

wait_ready() {
  local service=$1 deadline=$((SECONDS + 120))
  until curl -fs "http://127.0.0.1:${http_port[$service]}/readyz" >/dev/null 2>&1; do
    alive "$service" || fail_with_log "$service" "$service exited during start-up"
    [ $SECONDS -lt $deadline ] || fail_with_log "$service" "$service not ready after 120 s"
    sleep 0.2
  done
}

# Runs a tool to completion, its stdout (JSON) in $work/<name>.json, its stderr here. It runs
# in a session of its own and the script waits with `wait`, which a signal interrupts: bash
# would defer the trap until a foreground command ended, so a SIGTERM or Ctrl-C would wait
# for the tool; this way cleanup stops it at once.
run_tool() {
  local name=$1 status=0; shift
  ( exec setsid "$@" ) >"$work/$name.json" &
  pid[$name]=$!
  wait "${pid[$name]}" || status=$?
  unset "pid[$name]"
  return $status
}

# shop-load; a run that fails (a service did not finish in time) is recorded, not fatal, so
# the other figures still get measured.
load() {
  local name=$1; shift
  say "shop-load $*"
  if ! run_timed "$name" "$bin/shop-load" "$@" --json; then
    echo "shop-load $name did not complete; its figures are partial" >&2
    failed=true
  fi
}

# --- the machine --------------------------------------------------------------------------
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
memory=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)
machine="$(nproc) CPUs (${cpu:-unknown model}), ${memory:-unknown} memory, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) at the start"

if [ -n "$bin_dir" ]; then
  for binary in "${services[@]}" shop-load shop-ceiling; do
    [ -x "$bin_dir/$binary" ] || die "--bin-dir: $bin_dir/$binary is missing"
  done
  bin=$bin_dir
else
  say "building ($profile)"
  # Every binary of the workspace, as `cargo build --workspace --bins` (scripts/test.sh) builds
  # them: a build of only the packages needed here would resolve the dependencies' features
  # without those of the dashboard and shop-dlt, and compile tower, tonic, syn, regex and
  # everything built on them a second time instead of reusing that build.
  build=(cargo build --locked --workspace --bins)
  [ "$profile" = release ] && build+=(--release)
  "${build[@]}"
  bin=target/$profile
fi
tansu=${TANSU_BIN:-$(scripts/install-tansu.sh)}
ports=()

# --- the broker's ceiling -----------------------------------------------------------------
say "broker fan-out ceiling: $ceiling_records records, 4 groups"
start_tansu tansu-ceiling
if ! run_timed ceiling "$bin/shop-ceiling" --bootstrap-servers "127.0.0.1:$port" \
    --records "$ceiling_records" --json; then
  echo "shop-ceiling failed; the ceiling is missing (broker log: $work/logs/tansu-ceiling.log)" >&2
  failed=true
fi
broker_cpu[ceiling]=$(cpu_seconds "${pid[tansu-ceiling]}")
stop tansu-ceiling

saga_orders=$(( ceiling_records / 5 > 0 ? ceiling_records / 5 : 1 ))
say "broker saga ceiling: $saga_orders orders of 5 records, 4 + 1 groups"
start_tansu tansu-saga
if ! run_timed ceiling-saga "$bin/shop-ceiling" --bootstrap-servers "127.0.0.1:$port" \
    --shape saga --records "$saga_orders" --json; then
  echo "shop-ceiling --shape saga failed (broker log: $work/logs/tansu-saga.log)" >&2
  failed=true
fi
broker_cpu[ceiling-saga]=$(cpu_seconds "${pid[tansu-saga]}")
stop tansu-saga

# --- (e) what TLS and SCRAM cost --------------------------------------------------------------
say "(e) the same ceiling over TLS, as a SCRAM-SHA-512 user"
start_tansu tansu-ceiling-secure secure
if ! run_timed ceiling-secure env KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
    KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD_FILE="$work/secure/admin.password" \
    KAFKA_SSL_CA_LOCATION="$work/secure/ca.crt" \
    "$bin/shop-ceiling" --bootstrap-servers "localhost:$port" \
    --records "$ceiling_records" --json; then
  echo "shop-ceiling over TLS failed (broker log: $work/logs/tansu-ceiling-secure.log)" >&2
  failed=true
fi
broker_cpu[ceiling-secure]=$(cpu_seconds "${pid[tansu-ceiling-secure]}")
stop tansu-ceiling-secure

# --- the services ---------------------------------------------------------------------------
start_tansu tansu
kafka_port=$port
declare -A http_port=()
for service in "${services[@]}"; do
  http_port[$service]=$(free_port "${ports[@]}")
  ports+=("${http_port[$service]}")
done
order_url=http://127.0.0.1:${http_port[order-service]}
consumer_urls=$(for s in "${consumers[@]}"; do printf 'http://127.0.0.1:%s,' "${http_port[$s]}"; done)
consumer_urls=${consumer_urls%,}
# Leftovers of interrupted runs: bench databases nobody is connected to.
if command -v psql >/dev/null; then
  psql "$POSTGRES_URL/postgres" -Atqc "SELECT datname FROM pg_database d WHERE datname LIKE 'bench\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)" 2>/dev/null |
    while read -r db; do psql "$POSTGRES_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null; done || true
fi

say "(b) backlog: $backlog orders while no consumer runs"
start_service order-service
wait_ready order-service
load backlog --url "$order_url" --rate max --count "$backlog" --no-completion
accepted=$(jq '.posts.accepted' "$work/backlog.json")
[ "$accepted" -gt 0 ] || die "no order of the backlog was accepted (log: $work/logs/order-service.log)"
published() {
  curl -fs "$order_url/metrics" | awk '$1 == "shop_outbox_published_total{service=\"order-service\"}" { print int($2) }'
}
deadline=$((SECONDS + 600))
while n=$(published || true); [ "${n:-0}" -lt "$accepted" ]; do
  [ $SECONDS -lt $deadline ] || fail_with_log order-service "the relay did not publish $accepted events in 600 s"
  sleep 0.2
done
say "(b) starting the four consumers on a backlog of $accepted orders"
for service in "${consumers[@]}"; do start_service "$service"; done
# Watching from the moment they start (the drain is timed from each one's first processed
# event), while making sure they come up at all; in a session of its own like run_tool.
start drain bash -c "exec $bin/shop-load drain --orders $accepted \
  --services $consumer_urls --timeout 3600s --json >'$work/drain.json'"
for service in "${consumers[@]}"; do wait_ready "$service"; done
if ! wait "${pid[drain]}"; then
  echo "the drain did not complete; its figures are partial (log: $work/logs/drain.log)" >&2
  failed=true
fi
unset "pid[drain]"

completion=(--services "$consumer_urls" --completion-timeout 1800s)
say "(a) as fast as possible for $max_duration"
cpu_snapshot >"$work/cpu-before"
load max --url "$order_url" --rate max --duration "$max_duration" "${completion[@]}"
cpu_snapshot >"$work/cpu-after"
say "(c) latency at 100 and 1,000 orders/s"
for rate in 100 1000; do
  hop_snapshot >"$work/hops-before-$rate"
  load "rate$rate" --url "$order_url" --rate "$rate" --duration "$latency_duration" "${completion[@]}"
  hop_snapshot >"$work/hops-after-$rate"
done

# (h) the soak: minutes at a steady rate, where a slow leak or a backlog that builds shows.
rss_of() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/${pid[$1]}/status" 2>/dev/null || echo ""; }
if [ "$soak" != 0 ]; then
  say "(h) soak: $soak_rate orders/s for $soak"
  soak_rss_before=$(rss_of order-service)
  load soak --url "$order_url" --rate "$soak_rate" --duration "$soak" "${completion[@]}"
  soak_rss_after=$(rss_of order-service)
fi

# (d) the most resident memory each process ever had, read before it stops.
declare -A peak_mb=()
peak_of() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/${pid[$1]}/status" 2>/dev/null || echo ""; }
for service in "${services[@]}"; do peak_mb[$service]=$(peak_of "$service"); done

# (g) goodput under overload: the Order Service alone (the consumers stopped, so the orders
# only pile up on the topic), wrk's connections sending POST /orders back to back without
# ever backing off, first as many as HTTP_MAX_IN_FLIGHT (64), then four times as many. (shop-load
# is too polite and too slow on a small machine to overload the service.) Goodput is what the
# service stored: its orders_placed_total before and after.
for service in "${consumers[@]}"; do stop "$service"; done
placed_total() {
  curl -fs "$order_url/metrics" | awk '$1 == "shop_orders_placed_total{service=\"order-service\"}" { print int($2) }'
}
# wrk takes whole seconds.
wrk_duration=$(awk -v d="$latency_duration" 'BEGIN { s = d + 0; if (d ~ /ms$/) s /= 1000; else if (d ~ /m$/) s *= 60; printf "%ds", (s < 1 ? 1 : s) }')
if command -v wrk >/dev/null; then
  for clients in 64 256; do
    say "(g) wrk: $clients connections posting orders for $wrk_duration"
    before=$(placed_total)
    wrk_began=$(date +%s.%N)
    wrk -t2 -c"$clients" -d"$wrk_duration" -s scripts/lib/post-order.lua --timeout 10s \
      "$order_url/orders" >"$work/overload$clients.wrk" 2>&1 || failed=true
    wrk_took=$(awk -v b="$wrk_began" -v e="$(date +%s.%N)" 'BEGIN { print e - b }')
    after=$(placed_total)
    awk -v n=$((after - before)) -v t="$wrk_took" -F'[ \t]+' '
      /requests in/ { requests = $2 } /Non-2xx/ { refused = $NF }
      /^ *Latency/ { max = $5 } /Socket errors/ { errors = $0 }
      END {
        unit = max; sub(/[0-9.]+/, "", unit); value = max + 0
        ms = (unit == "s") ? value * 1000 : (unit == "us") ? value / 1000 : (unit == "m") ? value * 60000 : value
        printf "{\"stored\": %d, \"stored_per_second\": %.1f, \"requests\": %d, \"refused\": %d, \"slowest_ms\": %.0f, \"socket_errors\": \"%s\"}\n",
          n, n / t, requests, refused, ms, errors }' "$work/overload$clients.wrk" >"$work/overload$clients.json"
  done
else
  echo "wrk is not installed: step (g) skipped (apt-get install wrk)" >&2
fi
peak_mb[order-service]=$(peak_of order-service)

# --- the table ------------------------------------------------------------------------------
# jq over a figures file, "-" when the figure is missing.
figure() {
  local value
  value=$(jq -r "($2) // \"-\"" "$work/$1.json" 2>/dev/null) || true
  echo "${value:--}"
}
# A latency bound from shop-load ({"le": s} or {"gt": s}) in ms, e.g. "≤50" or ">300000".
bound_ms() {
  local value
  value=$(jq -r "($2) as \$b | if \$b == null then \"-\"
    elif \$b.le != null then \"≤\" + ((\$b.le * 1e6 | round) / 1000 | tostring)
    else \">\" + ((\$b.gt * 1e6 | round) / 1000 | tostring) end" "$work/$1.json" 2>/dev/null) || true
  echo "${value:--}"
}
# "met" or "MISSED" for a value against a target: meets VALUE OP TARGET (op: ge, lt, le).
meets() {
  local value=${1#≤}
  case $value in -|'') echo "-"; return ;; '>'*) value=inf ;; esac
  awk -v v="$value" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "inf") ok = (op == "ge"); else if (op == "ge") ok = (v + 0 >= t); else if (op == "lt") ok = (v + 0 < t); else ok = (v + 0 <= t)
    print (ok ? "met" : "MISSED") }'
}
round() { case $1 in -|'') echo -;; *) awk -v v="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, v }';; esac; }

ceiling_rate=$(figure ceiling '.fan_out_per_second')
saga_rate=$(figure ceiling-saga '.orders_per_second')
e2e_rate=$(figure max '.completion.all_services.orders_per_second')
share() {
  case "$1 $2" in *-*) echo -; return ;; esac
  awk -v e="$1" -v c="$2" 'BEGIN { printf "%.1f", 100 * e / c }'
}
ratio=$(share "$e2e_rate" "$ceiling_rate")
saga_ratio=$(share "$e2e_rate" "$saga_rate")
# CPU milliseconds per settled order of run (a), per process: "name ms" lines, then "all".
settled=$(figure max '.posts.accepted')
cpu_per_order() {
  local load_cpu
  load_cpu=$(cat "$work/max.cpu" 2>/dev/null || echo -)
  { join <(sort "$work/cpu-before") <(sort "$work/cpu-after") 2>/dev/null; echo "shop-load 0 $load_cpu"; } |
    awk -v n="$settled" '$2 != "-" && $3 != "-" && n > 0 {
        ms = 1000 * ($3 - $2) / n; total += ms; printf "%s %.2f\n", $1, ms; next }
      { printf "%s -\n", $1 }
      END { if (n > 0) printf "all %.2f\n", total }'
}

row() { printf '%-46s %20s %16s %8s\n' "$@"; }
echo
printf '\033[1mshop benchmark\033[0m  %s, commit %s, %s build\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$profile"
[ -n "$bin_dir" ] && echo "binaries: $bin_dir"
echo "machine: $machine"
echo "broker:  $tansu"
$smoke && echo "SMOKE RUN: tiny counts and a debug build; these figures mean nothing"
echo
row "figure" "measured" "target" ""
row "broker fan-out ceiling ($(figure ceiling .records) records, 4 groups)" "$(round "$ceiling_rate") rec/s" "" ""
row "  broker produce rate" "$(round "$(figure ceiling .produce_per_second)") rec/s" "" ""
# CPU milliseconds per 1,000 records of a ceiling run, broker and client: "broker / client".
per_thousand() {
  local records client
  records=$(figure "$1" .records)
  client=$(cat "$work/$1.cpu" 2>/dev/null || echo -)
  case "$records ${broker_cpu[$1]:--} $client" in *-*) echo "- / -"; return ;; esac
  awk -v r="$records" -v b="${broker_cpu[$1]}" -v c="$client" 'BEGIN { printf "%.0f / %.0f", 1e6 * b / r, 1e6 * c / r }'
}
row "  CPU ms per 1,000 records, broker / client" "$(per_thousand ceiling)" "" ""
row "(e) the ceiling over TLS + SCRAM-SHA-512" "$(round "$(figure ceiling-secure .fan_out_per_second)") rec/s" "" ""
row "  broker produce rate" "$(round "$(figure ceiling-secure .produce_per_second)") rec/s" "" ""
row "  CPU ms per 1,000 records, broker / client" "$(per_thousand ceiling-secure)" "" ""
row "broker saga ceiling ($(figure ceiling-saga .orders) orders, 5 records each)" "$(round "$saga_rate") orders/s" "" ""
row "  CPU ms per 1,000 records, broker / client" "$(per_thousand ceiling-saga)" "" ""
row "(a) sustained end to end, all four services" "$(round "$e2e_rate") orders/s" "≥ 2000" "$(meets "$e2e_rate" ge 2000)"
row "    as a share of the fan-out ceiling" "$ratio %" "" ""
row "    as a share of the saga ceiling" "$saga_ratio %" "≥ 50 %" "$(meets "$saga_ratio" ge 50)"
row "    POSTs accepted (max rate, $max_duration)" "$(round "$(figure max .posts.accepted_per_second)") orders/s" "" ""
for i in 0 1 2 3; do
  name=$(figure drain ".services[$i].service")
  rate=$(figure drain ".services[$i].events_per_second")
  row "(b) backlog drain, ${name:--}" "$(round "$rate") events/s" "≥ 10000" "$(meets "$rate" ge 10000)"
done
row "    backlog of $accepted built at" "$(round "$(figure backlog .posts.accepted_per_second)") orders/s" "" ""
for rate in 100 1000; do
  p50=$(figure "rate$rate" .posts.latency_ms.p50)
  p99=$(figure "rate$rate" .posts.latency_ms.p99)
  all99=$(bound_ms "rate$rate" .completion.all_services.order_to_all_effects.p99)
  if [ $rate = 1000 ]; then
    row "(c) at $rate/s: POST p50 / p99 (ms)" "$(round "$p50" 1) / $(round "$p99" 1)" "p99 ≤ 15" "$(meets "$p99" le 15)"
    row "    order→all four effects p99 (ms)" "$all99" "≤ 100" "$(meets "$all99" le 100)"
  else
    row "(c) at $rate/s: POST p50 / p99 (ms)" "$(round "$p50" 1) / $(round "$p99" 1)" "" ""
    row "    order→all four effects p99 (ms)" "$all99" "≤ 50" "$(meets "$all99" le 50)"
  fi
  hops() { hop_quantiles "$work/hops-before-$rate" "$work/hops-after-$rate" "$1" "$2"; }
  row "    hop p50 / p99 (ms): placed → answered" "$(hops "inventory-service payment-service" order_placed)" "" ""
  row "      answered → decided" "$(hops order-service "stock_reserved stock_rejected payment_authorized payment_declined")" "" ""
  row "      decided → applied" "$(hops "inventory-service payment-service email-service analytics-service" "order_confirmed order_cancelled")" "" ""
  row "    achieved (accepted/s, completed/s)" "$(round "$(figure "rate$rate" .posts.accepted_per_second)") / $(round "$(figure "rate$rate" .completion.all_services.orders_per_second)")" "" ""
done
for service in "${services[@]}"; do
  row "(d) peak memory (VmHWM), $service" "${peak_mb[$service]:--} MB" "< 50" "$(meets "${peak_mb[$service]:--}" lt 50)"
done
best=$(figure overload64 .stored_per_second)
crowded=$(figure overload256 .stored_per_second)
row "(g) wrk, 64 connections: orders stored" "$(round "$best") orders/s" "" ""
row "    256 connections: stored, share of 64" "$(round "$crowded")/s, $(share "$crowded" "$best") %" "≥ 90 %" "$(meets "$(share "$crowded" "$best")" ge 90)"
row "    256 connections: 503s, slowest answer (ms)" "$(figure overload256 .refused) / $(figure overload256 .slowest_ms)" "" ""
if [ "$soak" != 0 ]; then
  row "(h) soak at $soak_rate/s for $soak: accepted / settled per s" "$(round "$(figure soak .posts.accepted_per_second)") / $(round "$(figure soak .completion.all_services.orders_per_second)")" "" ""
  row "    order→all four effects p50 / p99 (ms)" "$(bound_ms soak .completion.all_services.order_to_all_effects.p50) / $(bound_ms soak .completion.all_services.order_to_all_effects.p99)" "" ""
  row "    order-service resident memory, start → end" "${soak_rss_before:--} → ${soak_rss_after:--} MB" "" ""
fi
cpu_per_order >"$work/cpu-per-order"
row "(f) CPU per settled order in (a), all processes" "$(awk '$1 == "all" { print $2 }' "$work/cpu-per-order") ms" "" ""
while read -r name ms; do
  [ "$name" = all ] || row "    $name" "$ms ms" "" ""
done <"$work/cpu-per-order"
echo
echo "order→effect latencies are histogram bucket bounds (≤ the true value's bucket); the all-four"
echo "figure is an upper bound (docs/benchmarks.md). Run took $((SECONDS - began)) s."
if $failed; then
  die "some measurements did not complete (see above); figures marked - are missing"
fi
