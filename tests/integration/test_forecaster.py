"""The forecaster through real processes: producer → analytics → forecaster → ingestor.

Every forecast in the table is checked against the same pure code run offline on the
indicators topic (same data, same fit, same made_at), so "the same forecasts after a kill
and restart" is checked value by value, not just by count.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from datetime import timedelta

import pytest

from stockpipe.common.messages import Codec, Forecast, Indicators
from stockpipe.forecaster.engine import Engine
from stockpipe.forecaster.models import linreg_predict, model_label
from stockpipe.forecaster.pool import arima_task, linreg_task
from stockpipe.forecaster.settings import ForecasterSettings

from harness import Stack, metrics_of, wait_for

pytestmark = pytest.mark.integration

INDICATORS, FORECASTS = Codec(Indicators), Codec(Forecast)

# Small windows so a test run fits many forecasts in seconds.
SETTINGS = dict(ARIMA_MIN_OBSERVATIONS=60, FORECAST_EVERY_BARS=20, ARIMA_WINDOW=120, ARIMA_FORECAST_STEPS=3,
                FORECAST_HISTORY=300, ML_WINDOW_SIZE=5, PREDICTION_HORIZON=2, MIN_TRAINING_SAMPLES=60,
                RETRAIN_FREQUENCY=40, ARIMA_MAX_P=3, ARIMA_MAX_Q=3, FORECASTER_WORKERS=2, PROGRESS_INTERVAL=0)


def settings_object() -> ForecasterSettings:
    return ForecasterSettings(**{k.lower(): v for k, v in SETTINGS.items()})


def publish(stack: Stack, n: int, symbols: int, rate: float) -> None:
    stack.run_module("stockpipe.producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE=str(rate),
                     SYNTHETIC_START="2024-01-02T00:00:00Z", SYNTHETIC_SYMBOLS=str(symbols),
                     MAX_MESSAGES=str(n), COMPANIES="false", HTTP_PORT="0", timeout=300)


def reference(stack: Stack, n: int) -> dict:
    """(symbol, made_at, model family) -> (model label, [(target_ts, yhat, lo, hi)]) for every run owed,
    once analytics has published the ``n`` bars' indicators."""
    wait_for(lambda: len(stack.consume_all("indicators")) >= n, 120, interval=0.5, what=f"{n} indicator messages")
    s = settings_object()
    engine = Engine(s)
    trained: dict = {}
    out = {}
    msgs = sorted(stack.consume_all("indicators", timeout=30), key=lambda m: (m.partition(), m.offset()))
    for msg in msgs:
        for job in engine.add(INDICATORS.decode(msg.value()), msg.partition()):
            key = (job.key[0], job.ts)
            if job.kind == "arima":
                r = arima_task(job.log_closes, s.arima_max_p, s.arima_max_d, s.arima_max_q, s.arima_forecast_steps,
                               s.arima_confidence_level, None, None)
                pts = [(job.ts + timedelta(minutes=k + 1), math.exp(m), math.exp(lo), math.exp(hi))
                       for k, (m, lo, hi) in enumerate(zip(r["mean"], r["lo"], r["hi"]))]
                out[key + ("arima",)] = (model_label(r["params"]), pts)
            elif job.kind == "linreg_train":
                trained[(job.key, job.ts)] = linreg_task(job.x, job.y, s.ml_window_size, s.prediction_horizon,
                                                         s.test_size, s.random_state)["params"]
            else:
                params = trained[(job.key, job.train_ts)]
                m, lo, hi = linreg_predict(params, job.row, s.arima_confidence_level)
                c = job.close
                out[key + ("linreg",)] = ("linreg", [(job.ts + timedelta(minutes=s.prediction_horizon),
                                                      c * math.exp(m), c * math.exp(lo), c * math.exp(hi))])
    return out


def stored(stack: Stack) -> dict:
    rows = stack.query("SELECT symbol, made_at, model, target_ts, yhat, lo, hi FROM forecasts "
                       "ORDER BY symbol, made_at, model, target_ts")
    out: dict = defaultdict(list)
    labels: dict = defaultdict(set)
    for symbol, made_at, model, target, yhat, lo, hi in rows:
        family = "linreg" if model == "linreg" else "arima"
        labels[(symbol, made_at, family)].add(model)
        out[(symbol, made_at, family)].append((target, yhat, lo, hi))
    dup = {k: v for k, v in labels.items() if len(v) > 1}
    assert not dup, f"two models for one forecast run: {dup}"
    return {k: (labels[k].pop(), v) for k, v in out.items()}


def assert_same(got: dict, want: dict) -> None:
    missing = set(got) - set(want)
    assert not missing, f"forecasts made at bars that owe none: {sorted(missing)[:3]}"
    for k, (label, points) in got.items():
        w_label, w_points = want[k]
        assert label == w_label, f"{k}: {label} != {w_label}"
        assert [p[0] for p in points] == [p[0] for p in w_points], f"{k}: target times differ"
        for p, q in zip(points, w_points):
            for a, b in zip(p[1:], q[1:]):
                assert a == pytest.approx(b, rel=1e-9), f"{k}: {p} != {q}"


def emitted_once_each(stack: Stack) -> int:
    """Every forecast message re-sent is identical to the first (a replay makes no other forecast)."""
    seen: dict = {}
    for msg in stack.consume_all("forecasts", timeout=30):
        f = FORECASTS.decode(msg.value())
        key = (f.symbol, f.made_at, "linreg" if f.model == "linreg" else "arima")
        assert seen.get(key, f) == f, f"two different forecasts for {key}"
        seen[key] = f
    return len(seen)


def test_bars_in_forecasts_in_the_table_at_the_next_bar_times(stack: Stack) -> None:
    symbols, n = 3, 600
    ingestor = stack.start("ingestor")
    analytics = stack.start("analytics")
    forecaster = stack.start("forecaster", **SETTINGS)
    forecaster.wait_ready(120)
    publish(stack, n, symbols, rate=60)
    want = reference(stack, n)
    last = {k[0]: max(t for (s, t, f) in want if s == k[0] and f == "arima") for k in want}

    def all_last_runs():
        got = stored(stack)
        return got if all(any(k[0] == s and k[1] == t for k in got) for s, t in last.items()) else None

    got = wait_for(all_last_runs, 180, interval=1.0, what="the last forecast run of every symbol")
    assert_same(got, want)
    arima = [k for k in got if k[2] == "arima"]
    linreg = [k for k in got if k[2] == "linreg"]
    assert len(arima) >= symbols and len(linreg) >= symbols, (len(arima), len(linreg))
    for (_, made_at, family), (_, points) in got.items():
        assert made_at.tzinfo is not None and made_at.second == 0
        step = 2 if family == "linreg" else 1
        assert [p[0] for p in points] == [made_at + timedelta(minutes=step * (k + 1) if family == "arima" else 2)
                                          for k in range(len(points))]
        assert all(lo <= yhat <= hi for _, yhat, lo, hi in points)
    assert stack.scalar("SELECT count(*) FROM models WHERE kind = 'linreg'") >= symbols
    assert stack.scalar("SELECT count(*) FROM models WHERE kind = 'arima'") >= symbols
    m = metrics_of(forecaster.port)
    assert sum(v for (name, _), v in m.items() if name == "stockpipe_forecaster_fit_seconds_count") >= 2 * symbols
    # Scored once a forecast's target bars arrived (the last runs' targets never do here).
    wait_for(lambda: any(name == "stockpipe_forecaster_mase" for name, _ in metrics_of(forecaster.port)), 30,
             what="an accuracy gauge")
    emitted_once_each(stack)
    for p in (forecaster, analytics, ingestor):
        assert p.terminate() == 0


def test_kill_and_restart_mid_stream_gives_the_same_forecasts_none_duplicated(stack: Stack) -> None:
    symbols, n = 4, 1200
    ingestor = stack.start("ingestor")
    analytics = stack.start("analytics")
    first = stack.start("forecaster", **SETTINGS)
    first.wait_ready(120)
    producer = threading.Thread(target=publish, args=(stack, n, symbols, 60))
    producer.start()
    wait_for(lambda: stack.scalar("SELECT count(*) FROM (SELECT DISTINCT symbol, made_at FROM forecasts) d") >= 4,
             120, interval=0.5, what="forecasts under way")
    first.kill()
    second = stack.start("forecaster", **SETTINGS)
    producer.join()
    want = reference(stack, n)
    last = {k[0]: max(t for (s, t, f) in want if s == k[0] and f == "arima") for k in want}
    wait_for(lambda: all(stack.scalar("SELECT count(*) FROM forecasts WHERE symbol = %s AND made_at = %s",
                                      (s, t)) for s, t in last.items()), 240, interval=1.0,
             what="the last forecast run of every symbol")
    assert "state rebuilt" in second.output()
    assert_same(stored(stack), want)
    emitted_once_each(stack)
    # One row per (series, kind, window end): a model trained again after the kill is not stored twice.
    assert stack.scalar("SELECT count(*) FROM (SELECT symbol, kind, window_end FROM models "
                        "GROUP BY 1, 2, 3 HAVING count(*) > 1) d") == 0
    for p in (second, analytics, ingestor):
        assert p.terminate() == 0


def test_a_restart_loads_its_models_and_does_not_retrain(stack: Stack) -> None:
    stack.start("ingestor")
    stack.start("analytics")
    first = stack.start("forecaster", **SETTINGS)
    first.wait_ready(120)
    publish(stack, 500, 2, rate=0)
    want = reference(stack, 500)
    trainings = {(s, t) for (s, t, f) in want if f == "linreg"}
    assert trainings
    wait_for(lambda: stack.scalar("SELECT count(*) FROM forecasts") > 0 and
             metrics_of(first.port).get(("stockpipe_forecaster_fits_pending", ()), 1) == 0, 120, interval=1.0,
             what="every fit done")
    models = stack.scalar("SELECT count(*) FROM models")
    assert first.terminate() == 0
    second = stack.start("forecaster", **SETTINGS)
    second.wait_ready(120)
    wait_for(lambda: "loaded" in second.output(), 60, what="models loaded")
    wait_for(lambda: metrics_of(second.port).get(("stockpipe_forecaster_fits_pending", ()), 1) == 0, 60,
             what="resumed jobs done")
    m = metrics_of(second.port)
    assert m.get(("stockpipe_forecaster_models_reused_total", (("model", "linreg"),)), 0) >= 1
    assert sum(v for (name, _), v in m.items() if name == "stockpipe_forecaster_fit_seconds_count") == 0
    assert stack.scalar("SELECT count(*) FROM models") == models
    assert second.terminate() == 0


@pytest.mark.parametrize("to", ["process", "group"])
def test_sigterm_with_fits_in_flight_exits_0_within_shutdown_timeout(stack: Stack, to: str) -> None:
    """SIGTERM to the process (Kubernetes, docker stop) or to its whole process group (make
    run's Ctrl-C): exit 0 in time, no traceback, no fit worker left running."""
    import os
    import signal
    import subprocess
    import time

    stack.start("analytics")
    busy = dict(SETTINGS, ARIMA_MIN_OBSERVATIONS=150, FORECAST_EVERY_BARS=1, ARIMA_WINDOW=250, ARIMA_MAX_P=5,
                ARIMA_MAX_Q=5, SHUTDOWN_TIMEOUT=10)
    forecaster = stack.start("forecaster", **busy)
    forecaster.wait_ready(120)
    publish(stack, 3000, 10, rate=0)
    wait_for(lambda: metrics_of(forecaster.port).get(("stockpipe_forecaster_fits_pending", ()), 0) > 0, 120,
             interval=0.2, what="fits in flight")
    def descendants(pid: int) -> set[int]:
        children = {int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()}
        return children.union(*(descendants(c) for c in children))

    workers = descendants(forecaster.proc.pid)  # the forkserver, its fit workers, the resource tracker
    assert workers
    start = time.monotonic()
    if to == "group":
        # One signal, as make run's Ctrl-C sends. Not followed by terminate(): a second
        # SIGTERM means "exit now" (exit 1) whenever the first was handled before it arrived.
        os.killpg(forecaster.proc.pid, signal.SIGTERM)
        code = forecaster.wait(20)
    else:
        code = forecaster.terminate(timeout=20)
    assert code == 0
    assert time.monotonic() - start < 10.5
    assert "Traceback" not in forecaster.output()
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 10,
             what="the forecaster's fit workers gone")
