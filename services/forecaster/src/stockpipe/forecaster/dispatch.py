"""Jobs to forecasts: fits in the pool, models in the registry, forecasts published in order.

The consume loop's thread only updates the series and hands their jobs over
(:meth:`Dispatcher.submit`), getting a Future that completes once every job of that batch and
of the batches before it is resolved: its forecast handed to the publisher, or skipped. The
loop then waits for Kafka's acknowledgement and commits, so offsets never pass a bar whose
forecast is owed. One dispatcher thread does the rest, in order per series:

1. a fit job whose series has a newer job of the same kind queued behind it is skipped
   (overtaken before it started: at most one pending fit per series, and a backlog never
   piles up stale fits);
2. the registry is asked for the model trained at that bar (a restart or rebalance does not
   retrain what it already has); else the fit goes to the pool (one running fit per series,
   at most one per worker);
3. a fresh model is saved to the registry (with the series' accuracy so far), then its
   forecast is published; a failed fit is logged and counted, and the previous model
   forecasts instead (ARIMA: its fixed coefficients on the new window; regression: the
   previous coefficients);
4. a regression forecast uses exactly the model trained at its scheduled training (never a
   later one), so every forecast is a function of the bars up to its ``made_at``: a replay
   makes the same one. Under a backlog a restarted replica may skip or make other runs
   than the first one did (step 1), but never a different forecast for the same bar.

Accuracy: every published forecast is scored on its target bars as they arrive
(:mod:`stockpipe.forecaster.evaluation`), exported as gauges by series and model family
(``arima``, ``naive``, ``linreg``) and stored with the next model of that series.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from stockpipe.common.errors import TransientError
from stockpipe.common.lifecycle import Backoff
from stockpipe.common.messages import Codec, Forecast, ForecastPoint, interval_length
from stockpipe.common.metrics import ERRORS
from stockpipe.forecaster.engine import Job, SeriesKey, next_bar_times
from stockpipe.forecaster.evaluation import MIN_SCORED, Scorer
from stockpipe.forecaster.models import linreg_predict, model_label
from stockpipe.forecaster.pool import FitPool, arima_task, linreg_task
from stockpipe.forecaster.registry import ModelRecord, Registry
from stockpipe.forecaster.settings import ForecasterSettings

__all__ = ["Dispatcher", "FIT_SECONDS", "FIT_FAILURES", "FITS_PENDING"]

logger = logging.getLogger(__name__)

FIT_SECONDS = Histogram("stockpipe_forecaster_fit_seconds", "Time of one model fit in a worker, by model",
                        ["model"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
FITS_PENDING = Gauge("stockpipe_forecaster_fits_pending", "Fit jobs queued or running")
FIT_FAILURES = Counter("stockpipe_forecaster_fit_failures", "Fits that failed (the previous model kept)", ["model"])
FITS_SKIPPED = Counter("stockpipe_forecaster_fits_skipped", "Fit jobs overtaken by a newer one before starting",
                       ["model"])
MODELS_REUSED = Counter("stockpipe_forecaster_models_reused", "Fits not redone: the registry had the model",
                        ["model"])
FORECASTS = Counter("stockpipe_forecaster_forecasts", "Forecast runs published, by model family", ["model"])
_LABELS = ["symbol", "interval", "model", "steps"]
MASE = Gauge("stockpipe_forecaster_mase", "Out-of-sample MAE / naive last-value MAE (below 1 beats naive)", _LABELS)
MAE = Gauge("stockpipe_forecaster_mae", "Out-of-sample mean absolute error, price units", _LABELS)
RMSE = Gauge("stockpipe_forecaster_rmse", "Out-of-sample root mean squared error, price units", _LABELS)
COVERAGE = Gauge("stockpipe_forecaster_interval_coverage", "Share of targets inside the forecast interval", _LABELS)
SCORED = Gauge("stockpipe_forecaster_scored_points", "Forecast points scored on their target bars", _LABELS)
BEATS_NAIVE = Gauge("stockpipe_forecaster_beats_naive",
                    f"1 if MASE < 1 at every step ({MIN_SCORED}+ points), else 0", ["symbol", "interval", "model"])

_FORECASTS = Codec(Forecast)
_SEEN_BARS = 256  # closes remembered per series to score forecasts published after their targets


@dataclass
class _SeriesScores:
    scorers: dict[str, Scorer]
    seen: OrderedDict  # ts -> close of the latest bars
    last: datetime | None = None


class Dispatcher:
    """See the module docstring. Thread-safe entry points: submit, observe, restore, drop, close."""

    def __init__(self, settings: ForecasterSettings, pool: FitPool, registry: Registry,
                 publish: Callable[[str, bytes, str], None], stop: threading.Event) -> None:
        self.s = settings
        self.pool = pool
        self.registry = registry
        self._publish = publish
        self._stop = stop
        self.topic = settings.topic("forecasts")
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # receipts and the unresolved set
        self._unresolved: set[int] = set()
        self._heap: list[int] = []
        self._receipts: deque[tuple[int, Future]] = deque()
        self._max_seq = 0
        self._score_lock = threading.Lock()
        self._scores: dict[SeriesKey, _SeriesScores] = {}
        # Dispatcher-thread state.
        self._queues: dict[SeriesKey, deque[Job]] = {}
        self._running: dict[SeriesKey, Job] = {}
        self._arima_prev: dict[SeriesKey, dict] = {}
        self._linreg: dict[SeriesKey, OrderedDict] = {}  # train ts -> params (latest few)
        self._partitions: dict[SeriesKey, int] = {}
        self._db_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="forecaster-dispatch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ loop thread
    def submit(self, jobs: list[Job]) -> Future:
        """Hand jobs over; the Future completes when they and all earlier ones are resolved."""
        fut: Future = Future()
        with self._lock:
            for j in jobs:
                self._unresolved.add(j.seq)
                heapq.heappush(self._heap, j.seq)
                self._max_seq = max(self._max_seq, j.seq)
            if jobs:
                FITS_PENDING.set(len(self._unresolved))
            self._receipts.append((self._max_seq, fut))
            self._complete_receipts()
        if jobs:
            self._events.put(("jobs", jobs))
        return fut

    def observe(self, key: SeriesKey, ts: datetime, close: float) -> None:
        """A bar arrived: score the forecasts aimed at it."""
        with self._score_lock:
            sc = self._scores.get(key)
            if sc is None:
                sc = self._scores[key] = _SeriesScores({}, OrderedDict())
            sc.seen[ts] = close
            if len(sc.seen) > _SEEN_BARS:
                sc.seen.popitem(last=False)
            sc.last = ts
            for family, scorer in sc.scorers.items():
                scored = scorer.observe(ts, close)
                scorer.forget_before(ts)
                if scored:
                    self._export(key, family, scorer)

    def restore(self, series: dict[SeriesKey, tuple[datetime, int]]) -> None:
        """After a state rebuild: series -> (last ts, partition); models and track records reload."""
        if series:
            self._events.put(("restore", series))

    def drop(self, partitions: set[int]) -> None:
        self._events.put(("drop", partitions))

    def check_ready(self) -> None:
        if self._db_error:
            raise TransientError(f"model registry: {self._db_error}")
        if not self._thread.is_alive():
            raise TransientError("the dispatcher thread stopped")

    def close(self) -> None:
        """Abandon what is queued or running (SIGTERM): the bars are read again on restart."""
        self._events.put(("stop", None))
        self.pool.terminate()
        self._thread.join(timeout=2.0)

    # ------------------------------------------------------------ receipts
    def _resolve(self, job: Job) -> None:
        with self._lock:
            self._unresolved.discard(job.seq)
            FITS_PENDING.set(len(self._unresolved))
            self._complete_receipts()

    def _complete_receipts(self) -> None:  # under self._lock
        heap, unresolved = self._heap, self._unresolved
        while heap and heap[0] not in unresolved:
            heapq.heappop(heap)
        lowest = heap[0] if heap else math.inf
        while self._receipts and self._receipts[0][0] < lowest:
            self._receipts.popleft()[1].set_result(None)

    # ------------------------------------------------------------ dispatcher thread
    def _run(self) -> None:
        while True:
            kind, data = self._events.get()
            try:
                if kind == "stop":
                    return
                if kind == "jobs":
                    for job in data:
                        self._queues.setdefault(job.key, deque()).append(job)
                        self._partitions[job.key] = job.partition
                elif kind == "done":
                    self._finish(*data)
                elif kind == "restore":
                    self._restore(data)
                elif kind == "drop":
                    self._drop(data)
                self._pump()
            except _Stopped:
                return
            except Exception:  # a bug: log it loudly, keep the thread (the loop's stall check sees it)
                logger.exception("forecaster dispatcher: unexpected error handling %s", kind)
                ERRORS.labels("forecaster_dispatch").inc()

    def _db(self, what: str, action: Callable[[], Any]) -> Any:
        """Run a registry call, waiting a PostgreSQL outage out (readiness says why)."""
        backoff = Backoff(initial=0.5, cap=15.0)
        while True:
            try:
                result = action()
                if self._db_error:
                    logger.info("model registry reachable again")
                self._db_error = None
                return result
            except TransientError as exc:
                self._db_error = str(exc)
                ERRORS.labels("postgres").inc()
                delay = backoff.next_delay()
                logger.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
                if self._stop.wait(delay):
                    raise _Stopped() from exc

    def _pump(self) -> None:
        for key in list(self._queues):
            q = self._queues[key]
            while q and key not in self._running:
                job = q[0]
                if job.kind == "linreg_forecast":
                    q.popleft()
                    self._linreg_forecast(job)
                    self._resolve(job)
                    continue
                if any(j.kind == job.kind for j in islice(q, 1, None)):
                    q.popleft()  # overtaken before it started
                    FITS_SKIPPED.labels(_family(job.kind)).inc()
                    self._resolve(job)
                    continue
                if len(self._running) >= self.pool.workers:
                    return
                q.popleft()
                self._start(job)
            if not q:
                del self._queues[key]

    def _start(self, job: Job) -> None:
        symbol, interval = job.key
        kind = "arima" if job.kind == "arima" else "linreg"
        rec = self._db("looking up the model registry", lambda: self.registry.find(symbol, interval, kind, job.ts))
        s = self.s
        if job.kind == "linreg_train":
            if rec is not None:
                MODELS_REUSED.labels("linreg").inc()
                self._keep_linreg(job.key, job.ts, rec.params)
                self._resolve(job)
                return
            args: tuple = (job.x, job.y, s.ml_window_size, s.prediction_horizon, s.test_size, s.random_state)
            fn = linreg_task
        else:
            if rec is not None:
                MODELS_REUSED.labels("arima").inc()
            args = (job.log_closes, s.arima_max_p, s.arima_max_d, s.arima_max_q, s.arima_forecast_steps,
                    s.arima_confidence_level, rec.params if rec else None, self._arima_prev.get(job.key))
            fn = arima_task
        self._running[job.key] = job
        self.pool.submit(fn, args, lambda result: self._events.put(("done", (job, result, None))),
                         lambda exc: self._events.put(("done", (job, None, exc))))

    def _finish(self, job: Job, result: dict | None, exc: BaseException | None) -> None:
        self._running.pop(job.key, None)
        try:
            if job.key not in self._partitions:  # its partition went while it ran
                return
            family = "arima" if job.kind == "arima" else "linreg"
            if exc is not None:
                FIT_FAILURES.labels(family).inc()
                logger.error("%s fit of %s %s at %s crashed: %r", family, *job.key, job.ts.isoformat(), exc)
                return
            assert result is not None
            FIT_SECONDS.labels(family).observe(result["seconds"])
            if result["failed"]:
                FIT_FAILURES.labels(family).inc()
                logger.warning("%s fit of %s %s at %s failed (%s): the previous model stays in use", family,
                               *job.key, job.ts.isoformat(), result["failed"])
            if job.kind == "arima":
                self._arima_done(job, result)
            else:
                self._linreg_done(job, result)
        finally:
            self._resolve(job)

    def _save(self, job: Job, kind: str, params: dict, n_obs: int, family: str) -> None:
        symbol, interval = job.key
        with self._score_lock:
            sc = self._scores.get(job.key)
            metrics = sc.scorers[family].metrics() if sc and family in sc.scorers else {}
        start = job.ts - (n_obs - 1) * interval_length(interval)  # the window's first bar (no gaps assumed)
        rec = ModelRecord(symbol, interval, kind, params, metrics, start, job.ts, n_obs)
        self._db("saving a model", lambda: self.registry.save(rec))

    def _arima_done(self, job: Job, result: dict) -> None:
        params = result["params"]
        family = params["kind"]  # arima or naive
        if result["fresh"]:
            self._save(job, "arima", params, len(job.log_closes), family)
        if family == "arima":
            self._arima_prev[job.key] = params
        times = next_bar_times(job.ts, job.key[1], len(result["mean"]))
        points = [ForecastPoint(ts=t, yhat=math.exp(m), lo=math.exp(lo), hi=math.exp(hi))
                  for t, m, lo, hi in zip(times, result["mean"], result["lo"], result["hi"])]
        self._emit(job, model_label(params), family, points)

    def _linreg_done(self, job: Job, result: dict) -> None:
        params = result["params"]
        if params is None:  # failed: the previous coefficients serve this training's forecasts
            previous = self._linreg.get(job.key)
            if previous:
                self._keep_linreg(job.key, job.ts, next(reversed(previous.values())))
            return
        self._save(job, "linreg", params, len(job.y), "linreg")
        self._keep_linreg(job.key, job.ts, params)

    def _keep_linreg(self, key: SeriesKey, ts: datetime, params: dict) -> None:
        models = self._linreg.setdefault(key, OrderedDict())
        models[ts] = params
        while len(models) > 3:  # forecasts only ever need the latest trainings
            models.popitem(last=False)

    def _linreg_forecast(self, job: Job) -> None:
        params = self._linreg.get(job.key, {}).get(job.train_ts)
        if params is None or job.row is None:
            return  # its training was overtaken or failed with nothing before it
        mean, lo, hi = linreg_predict(params, job.row, self.s.arima_confidence_level)
        ts = next_bar_times(job.ts, job.key[1], params["horizon"])[-1]
        c = job.close
        self._emit(job, "linreg", "linreg",
                   [ForecastPoint(ts=ts, yhat=c * math.exp(mean), lo=c * math.exp(lo), hi=c * math.exp(hi))],
                   step=params["horizon"])

    def _emit(self, job: Job, label: str, family: str, points: list[ForecastPoint], step: int | None = None) -> None:
        symbol, interval = job.key
        forecast = Forecast(symbol=symbol, interval=interval, made_at=job.ts, model=label,
                            level=self.s.arima_confidence_level, points=points)
        self._publish(self.topic, _FORECASTS.encode(forecast), symbol)
        FORECASTS.labels(family).inc()
        with self._score_lock:
            sc = self._scores.get(job.key)
            if sc is None:
                sc = self._scores[job.key] = _SeriesScores({}, OrderedDict())
            scorer = sc.scorers.get(family)
            if scorer is None:
                scorer = sc.scorers[family] = Scorer(self.s.arima_confidence_level)
            pts = [((step or k + 1), p.ts, p.yhat, p.lo, p.hi) for k, p in enumerate(points)]
            scorer.add(job.close, [p for p in pts if sc.last is None or p[1] > sc.last])
            scored = 0
            for p in pts:  # targets that arrived before the forecast was published
                if sc.last is not None and p[1] <= sc.last and p[1] in sc.seen:
                    scorer.add(job.close, [p])
                    scored += scorer.observe(p[1], sc.seen[p[1]])
            if scored:
                self._export(job.key, family, scorer)

    def _export(self, key: SeriesKey, family: str, scorer: Scorer) -> None:
        symbol, interval = key
        m = scorer.metrics()
        for step, s in m["steps"].items():
            labels = (symbol, interval, family, step)
            SCORED.labels(*labels).set(s["n"])
            if s["n"]:
                MAE.labels(*labels).set(s["mae"])
                RMSE.labels(*labels).set(s["rmse"])
                if s["mase"] is not None:
                    MASE.labels(*labels).set(s["mase"])
                if s["coverage"] is not None:
                    COVERAGE.labels(*labels).set(s["coverage"])
        if m["beats_naive"] is not None:
            BEATS_NAIVE.labels(symbol, interval, family).set(1 if m["beats_naive"] else 0)

    def _restore(self, series: dict[SeriesKey, tuple[datetime, int]]) -> None:
        until = {k: ts for k, (ts, _) in series.items()}
        for k, (_, p) in series.items():
            self._partitions[k] = p
        arima = self._db("loading models", lambda: self.registry.latest(until, "arima"))
        linreg = self._db("loading models", lambda: self.registry.latest(until, "linreg"))
        with self._score_lock:
            for recs in (arima, linreg):
                for key, rec in recs.items():
                    family = rec.params["kind"]
                    sc = self._scores.setdefault(key, _SeriesScores({}, OrderedDict()))
                    scorer = sc.scorers.setdefault(family, Scorer(self.s.arima_confidence_level))
                    scorer.restore(rec.metrics)
        for key, rec in arima.items():
            if rec.params["kind"] == "arima":
                self._arima_prev[key] = rec.params
        for key, rec in linreg.items():
            self._keep_linreg(key, rec.window_end, rec.params)
        logger.info("loaded %d ARIMA and %d regression models for %d series", len(arima), len(linreg), len(series))

    def _drop(self, partitions: set[int]) -> None:
        gone = [k for k, p in self._partitions.items() if p in partitions]
        for key in gone:
            for job in self._queues.pop(key, ()):
                self._resolve(job)
            self._partitions.pop(key, None)
            self._arima_prev.pop(key, None)
            self._linreg.pop(key, None)
        with self._score_lock:
            for key in gone:
                self._scores.pop(key, None)


class _Stopped(Exception):
    pass


def _family(kind: str) -> str:
    return "arima" if kind == "arima" else "linreg"

