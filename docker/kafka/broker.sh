#!/usr/bin/env bash
# Starts one broker of docker-compose.yml, then hands over to the apache/kafka image's own
# start-up (/etc/kafka/docker/run: server.properties from the KAFKA_* variables, storage
# format, kafka-server-start).
#
# What it adds first:
#   1. the admin's client configuration, with which the health check logs in;
#   2. on the first start, the storage formatted with the admin's SCRAM-SHA-512 credential
#      (`kafka-storage format --add-scram`, KIP-900). SCRAM credentials live in the cluster's
#      metadata, so the first one cannot be created over the network: nobody could log in to
#      create it. Every node formats with the same credential, since whichever is elected
#      first writes it into the metadata log. Later starts leave the storage alone
#      (--ignore-formatted), and so does the image's own format, which accepts a formatted
#      directory as it must on every restart. So ADMIN_KAFKA_PASSWORD takes effect on fresh
#      volumes only (`docker compose down -v`).
set -euo pipefail
# shellcheck source=docker/kafka/common.sh
. /shop/common.sh

write_admin_config

# Formatting reads the node's identity, the quorum and where the metadata log goes, and
# checks that the configuration it is given is valid. It opens no socket, so the listeners
# are given as plain ones: what is formatted is the same, and the SASL settings need not be
# repeated here.
format_config=/tmp/shop/format.properties
cat >"$format_config" <<PROPERTIES
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=${KAFKA_CONTROLLER_LISTENER_NAMES}
listeners=${KAFKA_LISTENERS}
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS}
inter.broker.listener.name=${KAFKA_INTER_BROKER_LISTENER_NAME}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP//SASL_PLAINTEXT/PLAINTEXT}
log.dirs=${KAFKA_LOG_DIRS}
PROPERTIES
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
  --cluster-id "$CLUSTER_ID" --config "$format_config" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=${ADMIN_KAFKA_PASSWORD}]"

exec /etc/kafka/docker/run
