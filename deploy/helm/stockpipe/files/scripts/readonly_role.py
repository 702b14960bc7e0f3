"""Create or update the dashboard's read-only PostgreSQL role (run by the chart's migration Job).

Connects with the writers' settings (POSTGRES_* or POSTGRES_DSN, as every service does) and
makes READONLY_ROLE a login role with READONLY_PASSWORD that can read every table of the
public schema, today's and future ones (default privileges of the writer role), and nothing
else: its sessions are read-only by default too. Idempotent: safe on every install/upgrade.
"""

import os
import sys

import psycopg2
from psycopg2 import sql

from stockpipe.common.settings import CommonSettings, load

settings = load(CommonSettings)
role = os.environ["READONLY_ROLE"]
password = os.environ["READONLY_PASSWORD"]
if not role or not password:
    sys.exit("readonly_role: READONLY_ROLE and READONLY_PASSWORD must be set")

conn = psycopg2.connect(settings.dsn(), connect_timeout=settings.postgres_connect_timeout)
conn.autocommit = True
r = sql.Identifier(role)
with conn.cursor() as cur:
    cur.execute("SELECT current_user, current_database()")
    writer, database = cur.fetchone()
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    exists = cur.fetchone() is not None
    verb = "ALTER" if exists else "CREATE"
    # Only a superuser may even restate NOSUPERUSER on an existing role: an ALTER sets the
    # password and login alone (a role the DBA made keeps the attributes the DBA gave it).
    attributes = "LOGIN" if exists else "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    cur.execute(sql.SQL(verb + " ROLE {} WITH " + attributes + " PASSWORD %s").format(r), (password,))
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), r))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
    cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(r))
    cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(
        sql.Identifier(writer), r))
    cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(r))
conn.close()
print(f"readonly_role: {'altered' if exists else 'created'} role {role} (SELECT on {database}.public)", flush=True)
