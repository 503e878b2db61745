#!/bin/bash
# Runs once, after 10-databases.sql, when the postgres container initialises an empty data
# volume: one login role per service, named after it, owning that service's database and no
# other, with its password from .env. PUBLIC loses CONNECT on the five databases, so a
# service's role cannot even open another's. The `postgres` super user stays for you (host
# port 15432); no service uses it.
set -euo pipefail

role() {
  local role=$1 database=$2 password=$3
  # Written into SQL below: the same characters .env allows everywhere.
  [[ $password =~ ^[A-Za-z0-9._-]+$ ]] || {
    echo "postgres-roles.sh: the password of $role may hold only letters, digits, '.', '_' and '-'" >&2
    exit 1
  }
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --quiet <<SQL
CREATE ROLE "$role" LOGIN PASSWORD '$password';
ALTER DATABASE "$database" OWNER TO "$role";
REVOKE ALL ON DATABASE "$database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "$database" TO "$role";
SQL
}

role order-service orders "$ORDER_SERVICE_DB_PASSWORD"
role inventory-service inventory "$INVENTORY_SERVICE_DB_PASSWORD"
role payment-service payments "$PAYMENT_SERVICE_DB_PASSWORD"
role email-service email "$EMAIL_SERVICE_DB_PASSWORD"
role analytics-service analytics "$ANALYTICS_SERVICE_DB_PASSWORD"
