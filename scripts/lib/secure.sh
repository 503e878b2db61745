# `scripts/run-local.sh --secure`: a local CA and broker certificate, a SCRAM user per
# principal, and a broker that speaks only TLS and admits only those users. Everything is made
# on first use under the data directory and reused afterwards; nothing is committed.
# shellcheck shell=bash

# The shop's topics, as the admin creates them (shop_contract::topics::EVERY; checked by
# e2e/tests/run_local.rs).
secure_topics=(orders inventory payments orders.dlt inventory.dlt payments.dlt presence)

# A CA and a certificate for `localhost` signed by it, in $1 (ca.crt, broker.crt, broker.key).
secure_certificates() {
  local dir=$1
  mkdir -p "$dir"
  chmod 700 "$dir"
  [ -s "$dir/ca.crt" ] && [ -s "$dir/broker.crt" ] && [ -s "$dir/broker.key" ] && return 0
  command -v openssl >/dev/null || die "--secure needs openssl to make its certificates (apt-get install openssl)"
  say "making a local CA and a broker certificate for localhost in $dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shop local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
  openssl x509 -req -days 825 -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/broker.crt" \
    -extfile <(printf '%s\n' "subjectAltName=DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth") 2>/dev/null
  rm -f "$dir/broker.csr"
  chmod 600 "$dir/ca.key" "$dir/broker.key"
}

# A random password for each user ($2...) that has none yet, in $1/<user>.password.
secure_passwords() {
  local dir=$1 user
  shift
  for user in "$@"; do
    [ -s "$dir/$user.password" ] && continue
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/$user.password")
  done
}

# Creates the users ($5...) and the topics in the broker's storage ($2), once: `tansu user
# create` cannot authenticate itself, so it runs against the broker started for a moment
# without authentication, on 127.0.0.1 only, before it is started with TLS and SASL. A user
# whose password file changed since (new secrets) gets its new password.
secure_bootstrap_broker() {
  local tansu=$1 dir=$2 port=$3 secrets=$4 user topic pid config
  shift 4
  local missing=()
  for user in "$@"; do
    grep -qx "$user $(secure_digest "$secrets/$user.password")" "$dir/.users" 2>/dev/null || missing+=("$user")
  done
  [ ${#missing[@]} -eq 0 ] && [ -e "$dir/.topics" ] && return 0
  say "creating the SCRAM users (${missing[*]:-none new}) and the topics in $dir"
  (cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db) >"$dir/bootstrap.log" 2>&1 &
  pid=$!
  # Never left running, whatever ends the script meanwhile; the caller's own EXIT trap (the
  # benchmark's clean-up) still runs after it, and is put back afterwards.
  local previous
  previous=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  # shellcheck disable=SC2064 # expanded now, on purpose: this broker's pid
  trap "kill $pid 2>/dev/null; ${previous:-:}" EXIT
  wait_for_port "$port" 30 || { kill "$pid" 2>/dev/null; die "Tansu did not start; see $dir/bootstrap.log"; }
  for user in "${missing[@]}"; do
    "$tansu" user create --broker "tcp://127.0.0.1:$port" --mechanism scram512 \
      "$user" "$(cat "$secrets/$user.password")" >>"$dir/bootstrap.log" 2>&1 ||
      { kill "$pid"; die "cannot create user $user; see $dir/bootstrap.log"; }
    echo "$user $(secure_digest "$secrets/$user.password")" >>"$dir/.users"
  done
  if [ ! -e "$dir/.topics" ]; then
    for topic in "${secure_topics[@]}"; do
      config=()
      [ "$topic" = presence ] && config=(--config retention.ms=3600000)
      "$tansu" topic create "$topic" --broker "tcp://127.0.0.1:$port" --partitions 6 "${config[@]}" \
        >>"$dir/bootstrap.log" 2>&1 || { kill "$pid"; die "cannot create topic $topic; see $dir/bootstrap.log"; }
    done
    touch "$dir/.topics"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if [ -n "$previous" ]; then
    # shellcheck disable=SC2064
    trap "$previous" EXIT
  else
    trap - EXIT
  fi
}

# A password file's digest: a user is created again when its password changes.
secure_digest() {
  sha256sum "$1" | cut -c1-16
}

# `postgres://user@host:port?sslmode=verify-full&sslrootcert=<the server's certificate>` for
# the server at $1 when it has TLS on and its certificate can be read (a local server's
# self-signed certificate is its own root), else nothing. The host is the name the
# certificate carries (Debian's "snakeoil" names the machine, or localhost) when that name
# resolves; otherwise the chain is still verified but not the name (verify-ca).
secure_postgres_url_options() {
  local url=$1 ssl cert host port rest user name mode=verify-full
  command -v psql >/dev/null || return 0
  ssl=$(psql -w "$url/postgres" -Atqc "SHOW ssl" 2>/dev/null) || return 0
  [ "$ssl" = on ] || return 0
  cert=$(psql -w "$url/postgres" -Atqc "SHOW ssl_cert_file" 2>/dev/null) || return 0
  [ -r "$cert" ] || return 0
  read -r host port < <(postgres_host_port "$url")
  rest=${url#*://}
  user=${rest%%@*}
  [ "$user" = "$rest" ] && user=""
  name=$(openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | grep -o 'DNS:[^,]*' | head -n 1 | cut -d: -f2 || true)
  if [ -n "$name" ] && getent hosts "$name" >/dev/null 2>&1; then
    host=$name
  else
    mode=verify-ca
  fi
  echo "postgres://${user:+$user@}$host:$port?sslmode=$mode&sslrootcert=$cert"
}
