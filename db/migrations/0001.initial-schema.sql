-- stockpipe schema v1: the tables of DESIGN.md ("Tables").
-- Times are timestamptz (UTC), prices and indicator values double precision, volume bigint.
-- Every table has the key its idempotent upserts conflict on.

CREATE TABLE companies (
    symbol      text PRIMARY KEY,
    name        text,
    sector      text,
    industry    text,
    exchange    text,
    currency    text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE price_bars (
    symbol      text             NOT NULL,
    "interval"  text             NOT NULL,
    ts          timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    source      text             NOT NULL,
    PRIMARY KEY (symbol, "interval", ts)
);

CREATE TABLE indicators (
    symbol      text             NOT NULL,
    "interval"  text             NOT NULL,
    ts          timestamptz      NOT NULL,
    close       double precision NOT NULL,
    rsi         double precision,
    sma_short   double precision,
    sma_long    double precision,
    ema_short   double precision,
    ema_long    double precision,
    bb_upper    double precision,
    bb_middle   double precision,
    bb_lower    double precision,
    macd        double precision,
    macd_signal double precision,
    macd_hist   double precision,
    volatility  double precision,
    PRIMARY KEY (symbol, "interval", ts)
);

CREATE TABLE alerts (
    id          uuid PRIMARY KEY,
    symbol      text             NOT NULL,
    "interval"  text             NOT NULL,
    ts          timestamptz      NOT NULL,
    rule        text             NOT NULL,
    value       double precision NOT NULL,
    threshold   double precision NOT NULL,
    message     text             NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now()
);
-- The dashboard lists a symbol's latest alerts.
CREATE INDEX alerts_symbol_ts ON alerts (symbol, "interval", ts DESC);

CREATE TABLE forecasts (
    symbol      text             NOT NULL,
    "interval"  text             NOT NULL,
    made_at     timestamptz      NOT NULL,
    model       text             NOT NULL,
    target_ts   timestamptz      NOT NULL,
    yhat        double precision NOT NULL,
    lo          double precision,
    hi          double precision,
    PRIMARY KEY (symbol, "interval", made_at, model, target_ts)
);

-- The forecaster's model registry.
CREATE TABLE models (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol      text        NOT NULL,
    kind        text        NOT NULL,
    params      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metrics     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    artifact    bytea,
    trained_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX models_symbol_kind_trained ON models (symbol, kind, trained_at DESC);
