#!/usr/bin/env bash
# kafka-init in docker-compose.yml: runs once per `docker compose up`, as the admin super
# user, after the three brokers are healthy and before any service starts. It creates
#   1. every topic (auto-creation is off, and no service may create one);
#   2. every principal's SCRAM-SHA-512 credential, its password from .env;
#   3. every principal's ACLs, exactly those of contract/src/access.rs (the table in
#      docs/security.md): topics it reads get Read and Describe, topics it writes get Write
#      and Describe, its consumer group gets Read; literal names only, no wildcard, no
#      prefix, no All. e2e/tests/compose.rs reads the `acl` lines below and fails when they
#      grant less or more than the code declares.
# Each step can run again: topics are created if missing, passwords set again, ACLs added
# again (adding one that exists changes nothing). ACLs dropped from this file stay on a
# cluster that keeps its volumes, until `docker compose down -v` or `kafka-acls.sh --remove`.
set -euo pipefail
# shellcheck source=docker/kafka/common.sh
. /shop/common.sh

bin=/opt/kafka/bin
write_admin_config

# A topic with 3 replicas needs all three brokers registered, not just reachable.
tries=0
until [ "$("$bin/kafka-broker-api-versions.sh" --bootstrap-server "$BOOTSTRAP" \
  --command-config "$admin_config" 2>/dev/null | grep -c '(id: ')" -ge 3 ]; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "kafka-init: fewer than 3 brokers after 2 minutes" >&2; exit 1; fi
  echo "kafka-init: waiting for 3 brokers"
  sleep 2
done

# --- 1. Topics --------------------------------------------------------------------------------
for topic in orders orders.dlt inventory inventory.dlt payments payments.dlt presence; do
  # presence carries every instance's heartbeat, once a second, for the dashboard: only
  # the latest matter, so an hour is kept instead of a week.
  retention=()
  if [ "$topic" = presence ]; then retention=(--config retention.ms=3600000); fi
  "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin_config" \
    --create --if-not-exists \
    --topic "$topic" --partitions 6 --replication-factor 3 \
    --config min.insync.replicas=2 "${retention[@]}"
  "$bin/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin_config" \
    --describe --topic "$topic"
done

# --- 2. Users ---------------------------------------------------------------------------------
# `scram USER VARIABLE`: USER's SCRAM-SHA-512 credential, with the password VARIABLE holds.
# The admin's was written when the brokers were formatted (docker/kafka/broker.sh).
scram() {
  local user=$1 variable=$2
  require_password "$variable"
  "$bin/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin_config" \
    --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[password=${!variable}]"
}
scram order-service ORDER_SERVICE_KAFKA_PASSWORD
scram inventory-service INVENTORY_SERVICE_KAFKA_PASSWORD
scram payment-service PAYMENT_SERVICE_KAFKA_PASSWORD
scram email-service EMAIL_SERVICE_KAFKA_PASSWORD
scram analytics-service ANALYTICS_SERVICE_KAFKA_PASSWORD
scram dashboard DASHBOARD_KAFKA_PASSWORD
scram shop-dlt SHOP_DLT_KAFKA_PASSWORD

# --- 3. ACLs ----------------------------------------------------------------------------------
# Every grant is spelled out on one `acl` line: principal, operations, literal resources.
# Describe on a topic is implied by Read or Write already; it is granted as well so that the
# ACLs read as the table does. Read on a group covers joining it, committing offsets and
# fetching them (with Read on the topic).
acl() {
  "$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$admin_config" "$@"
}

# order-service: reads the answers, writes orders, its heartbeat and what it parks.
acl --add --allow-principal User:order-service --resource-pattern-type literal --operation Read --operation Describe --topic inventory --topic payments
acl --add --allow-principal User:order-service --resource-pattern-type literal --operation Write --operation Describe --topic orders --topic presence --topic inventory.dlt --topic payments.dlt
acl --add --allow-principal User:order-service --resource-pattern-type literal --operation Read --group order-service

# inventory-service
acl --add --allow-principal User:inventory-service --resource-pattern-type literal --operation Read --operation Describe --topic orders
acl --add --allow-principal User:inventory-service --resource-pattern-type literal --operation Write --operation Describe --topic inventory --topic presence --topic orders.dlt
acl --add --allow-principal User:inventory-service --resource-pattern-type literal --operation Read --group inventory-service

# payment-service
acl --add --allow-principal User:payment-service --resource-pattern-type literal --operation Read --operation Describe --topic orders
acl --add --allow-principal User:payment-service --resource-pattern-type literal --operation Write --operation Describe --topic payments --topic presence --topic orders.dlt
acl --add --allow-principal User:payment-service --resource-pattern-type literal --operation Read --group payment-service

# email-service
acl --add --allow-principal User:email-service --resource-pattern-type literal --operation Read --operation Describe --topic orders
acl --add --allow-principal User:email-service --resource-pattern-type literal --operation Write --operation Describe --topic presence --topic orders.dlt
acl --add --allow-principal User:email-service --resource-pattern-type literal --operation Read --group email-service

# analytics-service
acl --add --allow-principal User:analytics-service --resource-pattern-type literal --operation Read --operation Describe --topic orders
acl --add --allow-principal User:analytics-service --resource-pattern-type literal --operation Write --operation Describe --topic presence --topic orders.dlt
acl --add --allow-principal User:analytics-service --resource-pattern-type literal --operation Read --group analytics-service

# dashboard: reads only, in no group.
acl --add --allow-principal User:dashboard --resource-pattern-type literal --operation Read --operation Describe --topic orders --topic inventory --topic payments --topic presence

# shop-dlt: reads what is parked, replays it to the original topic and records the replay
# on the dead-letter topic; in no group.
acl --add --allow-principal User:shop-dlt --resource-pattern-type literal --operation Read --operation Describe --topic orders.dlt --topic inventory.dlt --topic payments.dlt
acl --add --allow-principal User:shop-dlt --resource-pattern-type literal --operation Write --operation Describe --topic orders --topic inventory --topic payments --topic orders.dlt --topic inventory.dlt --topic payments.dlt

# What the cluster now holds, for the log.
acl --list
echo "kafka-init: topics, users and ACLs in place"
