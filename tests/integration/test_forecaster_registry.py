"""The model registry on a real PostgreSQL: round trip, idempotent saves, latest per series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from stockpipe.common.db import Database
from stockpipe.common.settings import CommonSettings, Secret
from stockpipe.forecaster.models import arima_forecast, fit_arima
from stockpipe.forecaster.registry import ModelRecord, Registry

from harness import Stack

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def registry(stack: Stack) -> Registry:
    return Registry(Database(CommonSettings(postgres_dsn=Secret(stack.dsn))))


def test_round_trip_forecasts_exactly_like_the_fit(stack: Stack) -> None:
    reg = registry(stack)
    y = np.log(100) + np.cumsum(np.random.default_rng(4).normal(0, 0.01, 400))
    params = fit_arima(y, 5, 2, 5)
    metrics = {"level": 0.95, "steps": {"1": {"n": 3, "mase": 1.01}}, "beats_naive": None}
    rec = ModelRecord("AAA", "1m", "arima", params, metrics, T0, T0 + timedelta(minutes=399), 400)
    assert reg.save(rec) is True
    assert reg.save(rec) is False  # the same (series, kind, window_end): nothing written twice
    got = reg.find("AAA", "1m", "arima", rec.window_end)
    assert got is not None and got.params == params and got.metrics == metrics and got.n_obs == 400
    assert got.window_start == T0 and got.trained_at is not None
    a, b = arima_forecast(params, y, 5, 0.95), arima_forecast(got.params, y, 5, 0.95)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert reg.find("AAA", "5m", "arima", rec.window_end) is None
    row = stack.query("SELECT params->'order', artifact IS NOT NULL, \"interval\" FROM models")
    assert row == [(params["order"], True, "1m")]


def test_latest_per_series_up_to_a_time(stack: Stack) -> None:
    reg = registry(stack)
    for symbol in ("AAA", "BBB"):
        for k in range(3):
            end = T0 + timedelta(minutes=100 * (k + 1))
            reg.save(ModelRecord(symbol, "1m", "linreg", {"kind": "linreg", "k": k}, {}, T0, end, 100))
    got = reg.latest({("AAA", "1m"): T0 + timedelta(minutes=250), ("BBB", "1m"): T0 + timedelta(minutes=999),
                      ("CCC", "1m"): T0 + timedelta(minutes=999)}, "linreg")
    assert {k: r.params["k"] for k, r in got.items()} == {("AAA", "1m"): 1, ("BBB", "1m"): 2}
    assert reg.latest({("AAA", "1m"): T0}, "linreg") == {}
    assert reg.latest({("AAA", "1m"): T0 + timedelta(minutes=999)}, "arima") == {}
