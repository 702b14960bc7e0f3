"""Series state and the schedule: indicator messages in, fit and forecast jobs out (pure, no I/O).

A series is (symbol, interval). Each keeps its latest ``FORECAST_HISTORY`` bars (ts, close and
the 12 indicators) in ring buffers and counts every bar it has seen since the start of the
partition: that count is the schedule's clock, so a replay of the same partition puts every
fit at the same bar as the first run did.

Schedule (``n`` = bars seen, 1-based):

- a forecast run at ``n = ARIMA_MIN_OBSERVATIONS + k * FORECAST_EVERY_BARS`` (k = 0, 1, ...):
  an ARIMA job (auto-ARIMA fit on the latest ``ARIMA_WINDOW`` log closes, then a forecast of
  ``ARIMA_FORECAST_STEPS`` bars) and a regression forecast job when a regression exists;
- a regression training once the series has ``MIN_TRAINING_SAMPLES`` complete samples (every
  indicator has had a value, ``ML_WINDOW_SIZE`` returns exist, the target is known), then
  every ``RETRAIN_FREQUENCY`` bars.

Every job carries copies of the data it needs, so the jobs can run in other processes while
the buffers move on. Each is stamped with the ts of its bar: ``made_at`` of its forecast and
the end of its training window in the registry.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from stockpipe.common.messages import INDICATOR_FIELDS, Indicators, interval_length
from stockpipe.forecaster.models import features, training_set
from stockpipe.forecaster.settings import ForecasterSettings

__all__ = ["Job", "Series", "Engine", "SeriesKey", "next_bar_times"]

SeriesKey = tuple[str, str]  # (symbol, interval)

_NAN = math.nan


def next_bar_times(ts: datetime, interval: str, steps: int) -> list[datetime]:
    """Start times of the ``steps`` bars after the bar starting at ``ts``.

    Plain multiples of the interval: right for minute bars of a continuous feed (synthetic,
    crypto, FX); for exchange sessions (nights, weekends, holidays) the later points are
    the next interval starts on the clock, not the next trading bars.
    """
    step = interval_length(interval)
    return [ts + step * (k + 1) for k in range(steps)]


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of model work for one series, owed for the bar at ``ts``.

    kind: ``arima`` (fit + forecast; ``log_closes`` the window), ``linreg_train`` (``x``,
    ``y``), ``linreg_forecast`` (``row`` the bar's features, ``train_ts`` the training whose
    model it must use). ``seq`` orders all jobs of one engine.
    """

    seq: int
    kind: str
    key: SeriesKey
    ts: datetime
    close: float
    n: int
    partition: int
    log_closes: np.ndarray | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    row: np.ndarray | None = None
    train_ts: datetime | None = None


@dataclass(slots=True)
class Series:
    partition: int
    history: int
    ts: deque = field(init=False)
    close: deque = field(init=False)
    ind: deque = field(init=False)
    n: int = 0
    first_complete: int | None = None  # bar count from which every indicator has had a value
    seen: list[bool] = field(default_factory=lambda: [False] * len(INDICATOR_FIELDS))
    last_train: int | None = None  # bar count of the latest scheduled regression training
    last_train_ts: datetime | None = None
    # During a replay: the latest scheduled training's data, handed out by resume_jobs() so a
    # model the registry lacks (a crash between the fit and its save) is trained again.
    replay_train: tuple | None = None

    def __post_init__(self) -> None:
        self.ts = deque(maxlen=self.history)
        self.close = deque(maxlen=self.history)
        self.ind = deque(maxlen=self.history)

    @property
    def last_ts(self) -> datetime | None:
        return self.ts[-1] if self.ts else None


class Engine:
    """All series of the partitions this replica owns, and the jobs their bars make."""

    def __init__(self, settings: ForecasterSettings) -> None:
        self.s = settings
        self.series: dict[SeriesKey, Series] = {}
        self._seq = 0
        self.duplicates = 0
        self.late = 0
        # Longest lag any feature row needs (samples start after it).
        self._need = settings.ml_window_size + 1

    def _job(self, kind: str, key: SeriesKey, s: Series, **data) -> Job:
        self._seq += 1
        return Job(self._seq, kind, key, s.ts[-1], s.close[-1], s.n, s.partition, **data)

    def add(self, m: Indicators, partition: int = -1, *, replay: bool = False) -> list[Job]:
        """Take one bar; return the jobs it makes owed (none while ``replay``)."""
        key = (m.symbol, m.interval)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(partition, self.s.forecast_history)
        elif m.ts <= s.ts[-1]:
            if m.ts == s.ts[-1]:
                self.duplicates += 1
            else:
                self.late += 1
            return []
        values = tuple(_NAN if (v := getattr(m, f)) is None else v for f in INDICATOR_FIELDS)
        s.ts.append(m.ts)
        s.close.append(m.close)
        s.ind.append(values)
        s.n += 1
        if s.first_complete is None:
            for j, v in enumerate(values):
                if v == v:
                    s.seen[j] = True
            if all(s.seen) and s.n >= self._need:
                s.first_complete = s.n
        st = self.s
        jobs: list[Job] = []
        # Regression training: samples are rows first_complete .. n - horizon.
        if s.first_complete is not None:
            samples = s.n - st.prediction_horizon - s.first_complete + 1
            if samples >= st.min_training_samples and (samples - st.min_training_samples) % st.retrain_frequency == 0:
                s.last_train, s.last_train_ts = s.n, m.ts
                x, y = self.training_data(s)
                if replay:
                    s.replay_train = (x, y, m.ts, m.close, s.n)
                else:
                    s.replay_train = None
                    jobs.append(self._job("linreg_train", key, s, x=x, y=y))
        if s.n >= st.arima_min_observations and (s.n - st.arima_min_observations) % st.forecast_every_bars == 0:
            if not replay:
                window = np.log(np.fromiter(s.close, dtype=np.float64, count=len(s.close))[-st.arima_window:])
                jobs.append(self._job("arima", key, s, log_closes=window))
                if s.last_train_ts is not None:
                    jobs.append(self._job("linreg_forecast", key, s, row=self.feature_row(s),
                                          train_ts=s.last_train_ts))
        return jobs

    def resume_jobs(self, partitions: set[int]) -> list[Job]:
        """After a replay of ``partitions``: the latest training of each series, owed again
        (the dispatcher finds it in the registry, or trains it if the registry lacks it)."""
        jobs = []
        for key, s in self.series.items():
            if s.partition in partitions and s.replay_train is not None:
                x, y, ts, close, n = s.replay_train
                s.replay_train = None
                self._seq += 1
                jobs.append(Job(self._seq, "linreg_train", key, ts, close, n, s.partition, x=x, y=y))
        return jobs

    def last_bars(self, partitions: set[int]) -> dict[SeriesKey, tuple[datetime, int]]:
        """Series of ``partitions`` -> (ts of their last bar, partition)."""
        return {k: (s.ts[-1], s.partition) for k, s in self.series.items() if s.partition in partitions and s.ts}

    def training_data(self, s: Series) -> tuple[np.ndarray, np.ndarray]:
        closes = np.fromiter(s.close, dtype=np.float64, count=len(s.close))
        ind = np.array(s.ind, dtype=np.float64)
        return training_set(closes, ind, self.s.ml_window_size, self.s.prediction_horizon)

    def feature_row(self, s: Series) -> np.ndarray | None:
        """The latest bar's features, or None while incomplete.

        The whole buffer goes in (bounded by FORECAST_HISTORY): the forward fill of an
        indicator emitted every k-th bar needs its last value, wherever it is.
        """
        closes = np.fromiter(s.close, dtype=np.float64, count=len(s.close))
        x, mask = features(closes, np.array(s.ind, dtype=np.float64), self.s.ml_window_size)
        return x[-1].copy() if mask[-1] else None

    def drop_partitions(self, partitions: set[int]) -> int:
        gone = [k for k, s in self.series.items() if s.partition in partitions]
        for k in gone:
            del self.series[k]
        return len(gone)

    def step(self, key: SeriesKey) -> timedelta:
        return interval_length(key[1])
