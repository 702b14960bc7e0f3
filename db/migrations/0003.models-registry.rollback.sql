DROP INDEX IF EXISTS models_series_kind_window;
ALTER TABLE models DROP COLUMN IF EXISTS n_obs, DROP COLUMN IF EXISTS window_end,
    DROP COLUMN IF EXISTS window_start, DROP COLUMN IF EXISTS "interval";
