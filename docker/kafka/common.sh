# shellcheck shell=bash
# Sourced by broker.sh and init.sh, the scripts docker-compose.yml runs in the apache/kafka
# containers (mounted at /shop).

# Where the admin's client configuration is written: the brokers' health check and
# kafka-init pass it to the Kafka tools as --command-config.
admin_config=/tmp/shop/admin.properties

# Exits unless the variable named $1 holds a usable password. Passwords are spliced into
# JAAS configurations (password="..."), SCRAM specifications ([password=...]) and properties
# files, where a quote, comma, bracket, backslash or space would end them early or be read as
# syntax. The message names the variable, never its value.
require_password() {
  local name=$1
  local value=${!name-}
  if [ -z "$value" ]; then
    echo "$0: $name is not set (docker-compose.yml takes it from .env)" >&2
    exit 1
  fi
  if [[ ! $value =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "$0: $name may hold only letters, digits, '.', '_' and '-' (see .env)" >&2
    exit 1
  fi
}

# The admin super user's client configuration (SCRAM-SHA-512 on the CLIENT listener),
# readable by this container's user only.
write_admin_config() {
  require_password ADMIN_KAFKA_PASSWORD
  mkdir -p "$(dirname "$admin_config")"
  (
    umask 077
    cat >"$admin_config" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${ADMIN_KAFKA_PASSWORD}";
PROPERTIES
  )
}
