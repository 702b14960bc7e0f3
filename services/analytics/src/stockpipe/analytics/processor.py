"""One process's analytics state: bars in, indicator and alert messages out (pure, no I/O).

State is kept per series, (symbol, interval): live 1m bars and a 1d backfill never mix. A
bar whose ts equals the series' last one is a duplicate and is ignored; an older one is late,
counted and skipped. Either way the state is untouched, so the values stay those of the
ordered, de-duplicated series. Replaying the same bars in the same order rebuilds the same
state bit for bit, which is how a restarted or rebalanced replica continues exactly.

Duplicates: the first bar of a (symbol, interval, ts) wins, as everywhere (DESIGN.md): a
re-sent bar with other values changes neither the indicators nor the alerts.

Numbers. Every bar the decoder accepts (prices within ``PRICE_RANGE``) keeps every
indicator finite, and no update raises (property-tested over the whole accepted domain).
A close the indicator state cannot take (outside its numeric domain, see
:mod:`stockpipe.analytics.indicators`; only reachable by building a Bar around the decoder)
raises :class:`UnprocessableBar` before any state changes, so the caller dead-letters it
with its reason and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from stockpipe.analytics.alerts import AlertConfig, AlertState
from stockpipe.analytics.indicators import IndicatorConfig, IndicatorState
from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import Alert, Bar, Indicators

__all__ = ["Series", "Processor", "UnprocessableBar"]


class UnprocessableBar(InvalidMessage):
    """A decoded bar the indicator state cannot take; raised before any state changed."""


@dataclass(slots=True)
class Series:
    indicators: IndicatorState
    alerts: AlertState
    last_ts: datetime
    partition: int


@dataclass
class Processor:
    """Indicator and alert state of every series this replica owns."""

    indicator_config: IndicatorConfig
    alert_config: AlertConfig
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0

    def process(self, bar: Bar, partition: int = -1) -> tuple[Indicators | None, list[Alert]]:
        """The bar's indicator message and alerts; ``(None, [])`` for a duplicate or late bar.

        Raises :class:`UnprocessableBar` (state unchanged) for a close the state cannot take.
        """
        key = (bar.symbol, bar.interval)
        s = self.series.get(key)
        new = s is None
        if new:
            s = Series(IndicatorState(self.indicator_config),
                       AlertState(self.alert_config.for_interval(bar.interval)), bar.ts, partition)
        elif bar.ts <= s.last_ts:
            if bar.ts == s.last_ts:
                self.duplicates += 1
            else:
                self.late += 1
            return None, []
        try:
            v = s.indicators.update(bar.close)  # checks the close before it changes anything
        except ValueError as exc:
            raise UnprocessableBar("out_of_range", f"{bar.symbol} {bar.interval} close {bar.close!r}: {exc}") from None
        if new:
            self.series[key] = s
        s.last_ts = bar.ts
        alerts = s.alerts.update(bar, v)
        return Indicators(
            symbol=bar.symbol, interval=bar.interval, ts=bar.ts, close=bar.close,
            rsi=v[0], sma_short=v[1], sma_long=v[2], ema_short=v[3], ema_long=v[4],
            bb_upper=v[5], bb_middle=v[6], bb_lower=v[7], macd=v[8], macd_signal=v[9], macd_hist=v[10],
            volatility=v[11],
        ), alerts

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget the series of revoked partitions; return how many were dropped."""
        gone = [k for k, s in self.series.items() if s.partition in partitions]
        for k in gone:
            del self.series[k]
        return len(gone)
