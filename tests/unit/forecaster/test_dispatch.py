"""The dispatcher with an in-process pool and an in-memory registry: order, receipts, fallbacks, scores."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from test_engine import bars, settings

from stockpipe.common.messages import Codec, Forecast
from stockpipe.forecaster.dispatch import Dispatcher
from stockpipe.forecaster.engine import Engine
from stockpipe.forecaster.registry import ModelRecord


class InlinePool:
    """Runs a task when released (tests decide when fits finish)."""

    workers = 2

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.waiting: list = []
        self.calls: list = []

    def submit(self, fn, args, on_done, on_error) -> None:
        self.calls.append(fn.__name__)
        self.waiting.append((fn, args, on_done, on_error))
        if not self.hold:
            self.release()

    def release(self) -> None:
        while self.waiting:
            fn, args, on_done, on_error = self.waiting.pop(0)
            try:
                on_done(fn(*args))
            except Exception as exc:  # noqa: BLE001
                on_error(exc)

    def terminate(self) -> None:
        pass


class MemoryRegistry:
    def __init__(self) -> None:
        self.rows: dict = {}

    def save(self, rec: ModelRecord) -> bool:
        key = (rec.symbol, rec.interval, rec.kind, rec.window_end)
        if key in self.rows:
            return False
        self.rows[key] = rec
        return True

    def find(self, symbol, interval, kind, window_end):
        return self.rows.get((symbol, interval, kind, window_end))

    def latest(self, until, kind):
        out = {}
        for (s, i, k, end), rec in sorted(self.rows.items(), key=lambda kv: kv[0][3]):
            if k == kind and (s, i) in until and end <= until[(s, i)]:
                out[(s, i)] = rec
        return out


def make(pool=None, registry=None, **kw):
    s = settings(**kw)
    published: list = []
    d = Dispatcher(s, pool or InlinePool(), registry or MemoryRegistry(), lambda t, v, k: published.append(v),
                   threading.Event())
    return s, d, published


def feed(engine: Engine, d: Dispatcher, msgs, paced: bool = False) -> list:
    """Bars in; ``paced``: each bar waits for the previous one's forecasts (bars slower than fits)."""
    futures = []
    for m in msgs:
        jobs = engine.add(m, 0)
        d.observe((m.symbol, m.interval), m.ts, m.close)
        futures.append(d.submit(jobs))
        if paced:
            futures[-1].result(timeout=60)
    return futures


def decoded(published) -> list[Forecast]:
    return [Codec(Forecast).decode(v) for v in published]


def test_every_owed_forecast_is_published_and_receipts_complete_in_order() -> None:
    s, d, published = make()
    futures = feed(Engine(s), d, bars(130, warmup=20), paced=True)
    for f in futures:
        f.result(timeout=60)
    got = decoded(published)
    arima = [f for f in got if f.model != "linreg"]
    assert [f.made_at for f in arima] == [bars(130)[n - 1].ts for n in (50, 60, 70, 80, 90, 100, 110, 120, 130)]
    assert all(len(f.points) == 5 and f.points[0].ts == f.made_at + timedelta(minutes=1) for f in arima)
    assert all(f.level == 0.95 for f in got)
    linreg = [f for f in got if f.model == "linreg"]
    assert [f.made_at for f in linreg] == [bars(130)[n - 1].ts for n in (70, 80, 90, 100, 110, 120, 130)]
    assert all(f.points[0].ts == f.made_at + timedelta(minutes=2) for f in linreg)
    d.close()


def test_scores_reach_the_gauges_and_the_registry() -> None:
    from prometheus_client import REGISTRY

    reg = MemoryRegistry()
    s, d, published = make(registry=reg)
    for f in feed(Engine(s), d, bars(200, symbol="SCR", warmup=20), paced=True):
        f.result(timeout=60)
    mase = REGISTRY.get_sample_value("stockpipe_forecaster_mase",
                                     {"symbol": "SCR", "interval": "1m", "model": "arima", "steps": "1"})
    assert mase is not None and mase > 0
    last = max((k for k in reg.rows if k[2] == "arima"), key=lambda k: k[3])
    assert reg.rows[last].metrics["steps"]["1"]["n"] > 0
    d.close()


def test_a_newer_fit_replaces_a_queued_older_one() -> None:
    pool = InlinePool(hold=True)
    s, d, published = make(pool=pool, min_training_samples=200)  # ARIMA only
    engine = Engine(s)
    futures = feed(engine, d, bars(100))
    # The fit at bar 50 started (held); 60..90 were overtaken by 100 before they started.
    deadline = time.monotonic() + 60
    while not futures[-1].done() and time.monotonic() < deadline:
        time.sleep(0.1)
        pool.release()
    made = [f.made_at for f in decoded(published)]
    assert made == [bars(100)[49].ts, bars(100)[99].ts]
    assert pool.calls == ["arima_task", "arima_task"]
    d.close()


def test_forecasts_published_after_their_targets_arrived_are_scored() -> None:
    from prometheus_client import REGISTRY

    pool = InlinePool(hold=True)
    s, d, published = make(pool=pool, forecast_every_bars=2, arima_min_observations=50, min_training_samples=200)
    futures = feed(Engine(s), d, bars(80, symbol="LATE"))
    deadline = time.monotonic() + 60
    while not futures[-1].done() and time.monotonic() < deadline:
        time.sleep(0.1)
        pool.release()
    n = REGISTRY.get_sample_value("stockpipe_forecaster_scored_points",
                                  {"symbol": "LATE", "interval": "1m", "model": "arima", "steps": "1"})
    assert n and n >= 1
    d.close()


def test_a_batch_receipt_waits_for_its_fits() -> None:
    pool = InlinePool(hold=True)
    s, d, published = make(pool=pool, min_training_samples=200)
    futures = feed(Engine(s), d, bars(50))
    time.sleep(0.2)
    assert not futures[-1].done() and futures[-2].done()
    pool.release()
    futures[-1].result(timeout=30)
    assert len(published) == 1
    d.close()


def test_a_registry_model_is_reused_not_refitted() -> None:
    reg = MemoryRegistry()
    s, d, _ = make(registry=reg, min_training_samples=200)
    for f in feed(Engine(s), d, bars(60), paced=True):
        f.result(timeout=60)
    d.close()
    pool = InlinePool()
    s, d2, published = make(pool=pool, registry=reg, min_training_samples=200)
    for f in feed(Engine(s), d2, bars(60), paced=True):
        f.result(timeout=60)
    assert len(reg.rows) == 2  # the same two fits, stored once
    assert len(published) == 2 and pool.calls == ["arima_task", "arima_task"]  # forecasts from stored params
    d2.close()


def test_a_crashed_fit_is_counted_and_nothing_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import REGISTRY

    from stockpipe.forecaster import dispatch

    def boom(*args):
        raise RuntimeError("worker died")

    monkeypatch.setattr(dispatch, "arima_task", boom)
    before = REGISTRY.get_sample_value("stockpipe_forecaster_fit_failures_total", {"model": "arima"}) or 0
    s, d, published = make(min_training_samples=200)
    for f in feed(Engine(s), d, bars(60, symbol="BAD")):
        f.result(timeout=30)
    assert REGISTRY.get_sample_value("stockpipe_forecaster_fit_failures_total", {"model": "arima"}) == before + 2
    assert published == []
    d.close()


