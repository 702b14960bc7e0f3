"""One process's analytics state: bars in, indicator and alert messages out (pure, no I/O).

State is kept per series, (symbol, interval): live 1m bars and a 1d backfill never mix. A
bar whose ts equals the series' last one is a duplicate and is ignored; an older one is late,
counted and skipped. Either way the state is untouched, so the values stay those of the
ordered, de-duplicated series. Replaying the same bars in the same order rebuilds the same
state bit for bit, which is how a restarted or rebalanced replica continues exactly.

Duplicates: the first bar of a (symbol, interval, ts) wins, as everywhere (DESIGN.md): a
re-sent bar with other values changes neither the indicators nor the alerts.

Batches. :meth:`Processor.process_many` takes a polled batch at once: each series' bars are
applied in order, a series warms up in its own :class:`IndicatorState` (the scalar path),
and once every field is seeded its state moves into a column of :class:`IndicatorColumns`,
which advances every series with a bar in the batch in one numpy step per rank (first
bar of each, then the second, ...). The values are those of the scalar path, bit for bit
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
    indicators: IndicatorState | None  # while warming up (or with batching off); None once in a column
    alerts: AlertState | None          # the same
    last_ts: datetime
    partition: int
    col: int = -1  # its column in Processor.columns once seeded


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
        self._last_warm = self.indicator_config.warmup_bars - 1
        freqs = self.indicator_config.field_frequencies()
        self._freqs = None if all(f == 1 for f in freqs) else np.array(freqs)

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
        series, columns, last_warm, batched = self.series, self.columns, self._last_warm, self.batched
        q_col: list[int] = []    # bars for the columns: column, close, volume, rank in its series, index
        q_close: list[float] = []
        q_volume: list[int] = []
        q_rank: list[int] = []
        q_at: list[int] = []
        ranks: dict[int, int] = {}
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
                s = series[key] = Series(IndicatorState(self.indicator_config),
                                         AlertState(self.alert_config.for_interval(bar.interval)), bar.ts,
                                         partitions[i])
            s.last_ts = bar.ts
            if s.col < 0:
                v = s.indicators.update(close)
                results[i] = (v, s.alerts.update(bar, v))
                if batched and s.indicators.count > last_warm:
                    s.col = columns.add(s.indicators)
                    self.alert_columns.add(s.col, s.alerts)
                    s.indicators = s.alerts = None
            else:
                rank = ranks.get(s.col, 0)
                ranks[s.col] = rank + 1
                q_col.append(s.col)
                q_close.append(close)
                q_volume.append(bar.volume)
                q_rank.append(rank)
                q_at.append(i)
        if q_col:
            self._run_columns(bars, q_col, q_close, q_volume, q_rank, q_at, results)
        return results

    def _run_columns(self, bars: Sequence[Bar], q_col: list[int], q_close: list[float], q_volume: list[int],
                     q_rank: list[int], q_at: list[int], results: list) -> None:
        """Advance the columns rank by rank; write each bar's values and alerts into ``results``."""
        rank = np.array(q_rank, dtype=np.int64)
        cols = np.array(q_col, dtype=np.int64)
        order = np.lexsort((cols, rank))  # by rank, then column: runs of columns index as views
        cols = cols[order]
        closes = np.array(q_close, dtype=np.float64)[order]
        volumes = np.array(q_volume, dtype=np.int64)[order]
        at = np.array(q_at, dtype=np.int64)[order].tolist()
        rows = np.empty((len(q_col), 12))
        alerts: dict[int, list[Alert]] = {}
        start = 0
        for k in np.bincount(rank).tolist():  # rank 0 of every series, then rank 1, ...
            end = start + k
            part = cols[start:end]
            values = self.columns.update(part, closes[start:end])
            if self._freqs is not None:  # fields not due this bar: NaN here, None in the message
                n = self.columns.n[part]
                values[(n % self._freqs[:, None]) != 0] = np.nan
            self.alert_columns.update(part, values, closes[start:end], volumes[start:end], bars, at[start:end],
                                      alerts)
            rows[start:end] = values.T
            start = end
        out = rows.tolist()
        if self._freqs is not None:
            out = [[None if x != x else x for x in row] for row in out]
        for j, i in enumerate(at):
            results[i] = (out[j], alerts.get(i, []))

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the series of revoked partitions; return how many were dropped."""
        gone = [k for k, s in self.series.items() if s.partition in partitions]
        for k in gone:
            s = self.series.pop(k)
            if s.col >= 0:
                self.columns.remove(s.col)
                self.alert_columns.remove(s.col)
        return len(gone)
