DROP TABLE IF EXISTS models, forecasts, alerts, indicators, price_bars, companies;
