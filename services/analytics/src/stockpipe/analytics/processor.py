"""One process's analytics state: bars in, indicator and alert messages out (pure, no I/O).

State is kept per series, (symbol, interval): live 1m bars and a 1d backfill never mix. A
bar whose ts equals the series' last one is a duplicate and is ignored; an older one is late,
counted and skipped. Either way the state is untouched, so the values stay those of the
ordered, de-duplicated series. Replaying the same bars in the same order rebuilds the same
state bit for bit, which is how a restarted or rebalanced replica continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from stockpipe.analytics.alerts import AlertConfig, AlertState
from stockpipe.analytics.indicators import IndicatorConfig, IndicatorState
from stockpipe.common.messages import Alert, Bar, Indicators

__all__ = ["Series", "Processor"]


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
        """The bar's indicator message and alerts; ``(None, [])`` for a duplicate or late bar."""
        key = (bar.symbol, bar.interval)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(IndicatorState(self.indicator_config), AlertState(self.alert_config),
                                          bar.ts, partition)
        elif bar.ts <= s.last_ts:
            if bar.ts == s.last_ts:
                self.duplicates += 1
            else:
                self.late += 1
            return None, []
        s.last_ts = bar.ts
        v = s.indicators.update(bar.close)
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
