DROP INDEX IF EXISTS alerts_ts_id, alerts_rule_ts_id, alerts_symbol_ts_id, models_trained_id;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'stockpipe_reader') THEN
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM stockpipe_reader';
        EXECUTE 'REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM stockpipe_reader';
        EXECUTE 'REVOKE USAGE ON SCHEMA public FROM stockpipe_reader';
    END IF;
END
$$;
