-- The notifier's endpoints disabled by a 410 Gone, remembered across restarts (README
-- "Notifier"). One row per endpoint, keyed by the SHA-256 of its URL (hex): URLs may hold
-- tokens (Slack's do), so neither the URL nor any secret is stored. Delete a row to send to
-- that endpoint again (or change its URL, or start the notifier with NOTIFY_REENABLE).
-- 0005: numbered past the migrations other branches may add meanwhile (0004).
CREATE TABLE notifier_disabled_endpoints (
    endpoint_id text PRIMARY KEY CHECK (endpoint_id ~ '^[0-9a-f]{64}$'),
    endpoint text NOT NULL,  -- scheme://host[:port], as logs and metrics name it
    disabled_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL
);
