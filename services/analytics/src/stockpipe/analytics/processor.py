"""One process's analytics state: bars in, indicator and alert messages out (pure, no I/O).

State is kept per series, (symbol, interval): live 1m bars and a 1d backfill never mix. A
bar whose ts equals the series' last one is a duplicate and is ignored; an older one is late,
counted and skipped. Either way the state is untouched, so the values stay those of the
ordered, de-duplicated series. Replaying the same bars in the same order rebuilds the same
state bit for bit, which is how a restarted or rebalanced replica continues exactly.

Duplicates: the first bar of a (symbol, interval, ts) wins, as everywhere (DESIGN.md): a
re-sent bar with other values changes neither the indicators nor the alerts.

Batches. :meth:`Processor.process_many` takes a polled batch at once: every series has a
column of :class:`IndicatorColumns` and :class:`AlertColumns`, and the batch's bars go
through the C kernel in one call each for the indicators and the alerts, in arrival order,
so each series' bars are applied in order. The values are those of the pure-Python scalar
path (:class:`IndicatorState`, :class:`AlertState`; ``batched=False``), bit for bit
(tests/unit/analytics/test_processor.py feeds random interleavings through both).
:meth:`Processor.process` is the same for one bar.

Numbers. Every bar the decoder accepts (prices within ``PRICE_RANGE``) keeps every
indicator finite, and no update raises (property-tested over the whole accepted domain).
A close the indicator state cannot take (outside its numeric domain, see
:mod:`stockpipe.analytics.indicators`; only reachable by building a Bar around the decoder)
raises :class:`UnprocessableBar` before any state changes, so the caller dead-letters it
with its reason and goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from stockpipe.analytics.alert_columns import AlertColumns
from stockpipe.analytics.alerts import AlertConfig, AlertState
from stockpipe.analytics.indicators import CLOSE_DOMAIN, IndicatorConfig, IndicatorState
from stockpipe.analytics.indicators.columns import IndicatorColumns
from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import Alert, Bar, Indicators

__all__ = ["Series", "Processor", "UnprocessableBar"]

_CMIN, _CMAX = CLOSE_DOMAIN



class UnprocessableBar(InvalidMessage):
    """A decoded bar the indicator state cannot take; raised before any state changed."""


@dataclass(slots=True)
class Series:
    indicators: IndicatorState | None  # the scalar path (batching off); None in a column
    alerts: AlertState | None          # the same
    last_ts: datetime
    partition: int
    col: int = -1  # its column in Processor.columns (batching on)


@dataclass
class Processor:
    """Indicator and alert state of every series this replica owns.

    ``batched=False`` keeps every series on the scalar path (the reference the tests compare
    the columns with).
    """

    indicator_config: IndicatorConfig
    alert_config: AlertConfig
    batched: bool = True
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0

    def __post_init__(self) -> None:
        self.columns = IndicatorColumns(self.indicator_config)
        self.alert_columns = AlertColumns(self.alert_config)

    def process(self, bar: Bar, partition: int = -1) -> tuple[Indicators | None, list[Alert]]:
        """The bar's indicator message and alerts; ``(None, [])`` for a duplicate or late bar.

        Raises :class:`UnprocessableBar` (state unchanged) for a close the state cannot take.
        """
        result = self.process_many([bar], [partition])[0]
        if result is None:
            return None, []
        if isinstance(result, UnprocessableBar):
            raise result
        v, alerts = result
        return Indicators(
            symbol=bar.symbol, interval=bar.interval, ts=bar.ts, close=bar.close,
            rsi=v[0], sma_short=v[1], sma_long=v[2], ema_short=v[3], ema_long=v[4],
            bb_upper=v[5], bb_middle=v[6], bb_lower=v[7], macd=v[8], macd_signal=v[9], macd_hist=v[10],
            volatility=v[11],
        ), alerts

    def process_many(self, bars: Sequence[Bar], partitions: Sequence[int]) -> list:
        """Process a batch of bars in order; one result per bar:

        - ``(values, alerts)``: the 12 indicator values (``INDICATOR_FIELDS`` order, None while
          warming up or not due) and the bar's alerts;
        - ``None``: a duplicate or late bar (state untouched);
        - an :class:`UnprocessableBar`: a close the state cannot take (state untouched).
        """
        results: list = [None] * len(bars)
        series = self.series
        q_col: list[int] = []    # bars for the columns, in order: column, close, volume, index in bars
        q_close: list[float] = []
        q_volume: list[int] = []
        q_at: list[int] = []
        for i, bar in enumerate(bars):
            key = (bar.symbol, bar.interval)
            s = series.get(key)
            if s is not None and bar.ts <= s.last_ts:
                if bar.ts == s.last_ts:
                    self.duplicates += 1
                else:
                    self.late += 1
                continue
            close = bar.close
            if not _CMIN <= close <= _CMAX:  # also NaN: nothing may change
                results[i] = UnprocessableBar(
                    "out_of_range", f"{bar.symbol} {bar.interval} close {close!r}: "
                    f"close must be a number in {_CMIN:g}..{_CMAX:g}")
                continue
            if s is None:
                s = series[key] = self._new_series(bar, partitions[i])
            s.last_ts = bar.ts
            if s.col < 0:
                v = s.indicators.update(close)
                results[i] = (v, s.alerts.update(bar, v))
            else:
                q_col.append(s.col)
                q_close.append(close)
                q_volume.append(bar.volume)
                q_at.append(i)
        if q_col:
            self._run_columns(bars, q_col, q_close, q_volume, q_at, results)
        return results

    def _new_series(self, bar: Bar, partition: int) -> Series:
        alerts = self.alert_config.for_interval(bar.interval)
        if not self.batched:
            return Series(IndicatorState(self.indicator_config), AlertState(alerts), bar.ts, partition)
        col = self.columns.new()
        self.alert_columns.new(col, alerts)
        return Series(None, None, bar.ts, partition, col)

    def _run_columns(self, bars: Sequence[Bar], q_col: list[int], q_close: list[float], q_volume: list[int],
                     q_at: list[int], results: list) -> None:
        """Feed the queued bars to the columns in order; write each one's values and alerts into ``results``."""
        cols = np.array(q_col, dtype=np.int64)
        closes = np.array(q_close, dtype=np.float64)
        values = self.columns.update(cols, closes)
        alerts: dict[int, list[Alert]] = {}
        self.alert_columns.update(cols, values, closes, np.array(q_volume, dtype=np.int64), bars, q_at, alerts)
        out = values.tolist()
        # Fields warming up or not due this bar: NaN here, None in the message.
        for j in np.flatnonzero(np.isnan(values).any(axis=1)).tolist():
            out[j] = [None if x != x else x for x in out[j]]
        if alerts:
            for j, i in enumerate(q_at):
                results[i] = (out[j], alerts.get(i, []))
        else:
            for j, i in enumerate(q_at):
                results[i] = (out[j], [])

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the series of revoked partitions; return how many were dropped."""
        gone = [k for k, s in self.series.items() if s.partition in partitions]
        for k in gone:
            s = self.series.pop(k)
            if s.col >= 0:
                self.columns.remove(s.col)
                self.alert_columns.remove(s.col)
        return len(gone)
