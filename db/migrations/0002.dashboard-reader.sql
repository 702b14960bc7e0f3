-- The dashboard's read-only role and the indexes its queries need (issue 14).
--
-- stockpipe_reader: SELECT on every table, nothing else, no login. The dashboard's sessions
-- switch to it (DASHBOARD_DB_ROLE), so even a login that owns the tables can only read.
-- Roles belong to the whole cluster: deploy/local/postgres.sh creates it (as superuser) and
-- lets the app user SET ROLE to it; a migrating user with CREATEROLE creates it here. Create
-- it before migrating elsewhere, or run the dashboard with DASHBOARD_DB_ROLE="" and a
-- read-only login of your own:
--     CREATE ROLE dashboard LOGIN PASSWORD '...' IN ROLE stockpipe_reader;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpipe_reader')
       AND EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
        BEGIN
            CREATE ROLE stockpipe_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration made it just now
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpipe_reader') THEN
        EXECUTE 'GRANT USAGE ON SCHEMA public TO stockpipe_reader';
        EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO stockpipe_reader';
        -- Tables later migrations create (by the same owner) are readable too.
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO stockpipe_reader';
    ELSE
        RAISE WARNING 'role stockpipe_reader does not exist: the dashboard needs DASHBOARD_DB_ROLE="" and a read-only login';
    END IF;
END
$$;

-- The alerts feed: newest first over all symbols, by rule, by symbol (any interval); (ts, id)
-- is the cursor, and a btree scanned backwards serves ORDER BY ts DESC, id DESC.
CREATE INDEX alerts_ts_id ON alerts (ts, id);
CREATE INDEX alerts_rule_ts_id ON alerts (rule, ts, id);
CREATE INDEX alerts_symbol_ts_id ON alerts (symbol, ts, id);
-- The model list of the API across symbols, newest first.
CREATE INDEX models_trained_id ON models (trained_at, id);
