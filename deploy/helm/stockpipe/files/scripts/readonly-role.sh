#!/bin/bash
# First start of the in-chart PostgreSQL (/docker-entrypoint-initdb.d): the dashboard's
# read-only role, able to read every table the writer role ($POSTGRES_USER) creates in the
# public schema, later ones included (default privileges), and nothing else. The chart's
# migration hook keeps its password in step on upgrades.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$READONLY_ROLE" -v pw="$READONLY_PASSWORD" -v db="$POSTGRES_DB" -v writer="$POSTGRES_USER" <<'SQL'
CREATE ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
GRANT CONNECT ON DATABASE :"db" TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer" IN SCHEMA public GRANT SELECT ON TABLES TO :"role";
ALTER ROLE :"role" SET default_transaction_read_only = on;
SQL
