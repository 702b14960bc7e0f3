-- The forecaster's model registry (DESIGN.md: models(id, symbol, interval, kind, params,
-- metrics, artifact, trained_at)): the series' interval, the training window, and one row
-- per (series, kind, end of window), so saving a model again (a replay) writes nothing.
ALTER TABLE models ADD COLUMN "interval" text NOT NULL DEFAULT '';
ALTER TABLE models ALTER COLUMN "interval" DROP DEFAULT;
ALTER TABLE models ADD COLUMN window_start timestamptz;
ALTER TABLE models ADD COLUMN window_end timestamptz;
ALTER TABLE models ADD COLUMN n_obs integer;
CREATE UNIQUE INDEX models_series_kind_window ON models (symbol, "interval", kind, window_end);
