"""The schedule: which bars owe a forecast run, a training, and with which data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from stockpipe.common.errors import SettingsError
from stockpipe.common.messages import Indicators
from stockpipe.common.settings import load
from stockpipe.forecaster.engine import Engine, next_bar_times
from stockpipe.forecaster.evaluation import Scorer, backtest
from stockpipe.forecaster.models import naive_forecast, naive_params
from stockpipe.forecaster.settings import ForecasterSettings

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def bars(n: int, symbol: str = "AAA", interval: str = "1m", warmup: int = 0, every: int = 1) -> list[Indicators]:
    rng = np.random.default_rng(0)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    out = []
    for i, c in enumerate(closes):
        v = None if i < warmup or i % every else float(c)
        out.append(Indicators(symbol=symbol, interval=interval, ts=T0 + timedelta(minutes=i), close=float(c),
                              rsi=None if v is None else 50.0, sma_short=v, sma_long=v, ema_short=v, ema_long=v,
                              bb_upper=v, bb_middle=v, bb_lower=v, macd=None if v is None else 0.1,
                              macd_signal=None if v is None else 0.1, macd_hist=None if v is None else 0.0,
                              volatility=None if v is None else 0.01))
    return out


def settings(**kw) -> ForecasterSettings:
    base = dict(arima_min_observations=50, forecast_every_bars=10, arima_window=40, forecast_history=300,
                ml_window_size=5, prediction_horizon=2, min_training_samples=40, retrain_frequency=25)
    base.update(kw)
    return ForecasterSettings(**base).check()


def run(engine: Engine, msgs: list[Indicators], replay: bool = False) -> list:
    jobs = []
    for m in msgs:
        jobs += engine.add(m, 0, replay=replay)
    return jobs


def test_forecast_runs_every_n_bars_from_min_observations() -> None:
    jobs = run(Engine(settings()), bars(100))
    arima = [j for j in jobs if j.kind == "arima"]
    assert [j.n for j in arima] == [50, 60, 70, 80, 90, 100]
    assert all(len(j.log_closes) == 40 for j in arima)
    assert arima[0].ts == T0 + timedelta(minutes=49)  # made_at = the bar the fit is made at
    np.testing.assert_allclose(np.exp(arima[-1].log_closes[-1]), arima[-1].close)


def test_training_at_min_samples_then_every_retrain_frequency_with_warm_up() -> None:
    # Indicators complete from bar 21 (warm-up of 20): samples = n - horizon - 21 + 1 = n - 22.
    jobs = run(Engine(settings()), bars(200, warmup=20))
    trains = [j for j in jobs if j.kind == "linreg_train"]
    assert [j.n for j in trains] == [62, 87, 112, 137, 162, 187]
    assert [len(j.y) for j in trains] == [40, 65, 90, 115, 140, 165]
    forecasts = [j for j in jobs if j.kind == "linreg_forecast"]
    assert forecasts[0].n == 70 and forecasts[0].train_ts == trains[0].ts
    assert all(f.row is not None for f in forecasts)


def test_calc_frequency_nulls_still_train() -> None:
    jobs = run(Engine(settings()), bars(200, warmup=20, every=3))
    trains = [j for j in jobs if j.kind == "linreg_train"]
    assert trains and all(np.all(np.isfinite(j.x)) for j in trains)


def test_replay_makes_no_jobs_but_the_same_state_and_clock() -> None:
    msgs = bars(130, warmup=20)
    live, replayed = Engine(settings()), Engine(settings())
    run(live, msgs[:100])
    assert run(replayed, msgs[:100], replay=True) == []
    a, b = run(live, msgs[100:]), run(replayed, msgs[100:])
    assert [(j.kind, j.n, j.ts) for j in a] == [(j.kind, j.n, j.ts) for j in b]
    assert all(np.array_equal(x.log_closes, y.log_closes) for x, y in zip(a, b) if x.kind == "arima")
    key = ("AAA", "1m")
    assert live.series[key].last_train_ts == replayed.series[key].last_train_ts


def test_duplicates_and_late_bars_change_nothing() -> None:
    msgs = bars(60)
    engine = Engine(settings())
    jobs = run(engine, msgs[:55] + [msgs[54], msgs[10]] + msgs[55:])
    assert engine.duplicates == 1 and engine.late == 1
    assert [j.n for j in jobs if j.kind == "arima"] == [50, 60]


def test_next_bar_times_follow_the_interval() -> None:
    assert next_bar_times(T0, "5m", 3) == [T0 + timedelta(minutes=5 * k) for k in (1, 2, 3)]
    assert next_bar_times(T0, "1d", 1) == [T0 + timedelta(days=1)]


def test_naive_backtest_has_mase_one_and_coverage_near_nominal() -> None:
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 3000)))

    def naive(history):
        logs = np.log(history)
        mean, lo, hi = naive_forecast(naive_params(logs[-300:]), logs, 5, 0.9)
        return np.exp(mean), np.exp(lo), np.exp(hi)

    m = backtest(closes, naive, start=300, every=3, steps=5, level=0.9)
    assert m["steps"]["1"]["mase"] == pytest.approx(1.0) and m["steps"]["5"]["mase"] == pytest.approx(1.0)
    assert m["beats_naive"] is False
    assert 0.85 <= m["steps"]["1"]["coverage"] <= 0.95 and 0.85 <= m["steps"]["5"]["coverage"] <= 0.95


def test_scorer_scores_on_arrival_and_restores_its_sums() -> None:
    s = Scorer(0.9)
    s.add(100.0, [(1, "t1", 101.0, 99.0, 103.0), (2, "t2", 102.0, 98.0, 104.0)])
    assert s.observe("t1", 102.0) == 1 and s.observe("t9", 1.0) == 0
    m = s.metrics()
    assert m["steps"]["1"]["mae"] == 1.0 and m["steps"]["1"]["mase"] == 0.5 and m["steps"]["1"]["coverage"] == 1.0
    assert m["beats_naive"] is None  # too few points to say
    s2 = Scorer(0.9)
    s2.restore(m)
    assert s2.metrics() == m


@pytest.mark.parametrize("env, variable", [
    ({"ARIMA_MAX_P": "-1"}, "ARIMA_MAX_P"),
    ({"ARIMA_MAX_D": "3"}, "ARIMA_MAX_D"),
    ({"ARIMA_CONFIDENCE_LEVEL": "95"}, "ARIMA_CONFIDENCE_LEVEL"),
    ({"TEST_SIZE": "0.9"}, "TEST_SIZE"),
    ({"FORECAST_EVERY_BARS": "often"}, "FORECAST_EVERY_BARS"),
    ({"ARIMA_MIN_OBSERVATIONS": "5000"}, "ARIMA_MIN_OBSERVATIONS"),
    ({"MIN_TRAINING_SAMPLES": "995"}, "MIN_TRAINING_SAMPLES"),
])
def test_bad_settings_name_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(ForecasterSettings, env).check()
    assert err.value.variable == variable
