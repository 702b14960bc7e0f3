"""Topic → table mappings: how each message becomes rows (all SQL of the ingestor is here).

A sink decodes a message into its v1 model and adds its rows to a batch, keyed by the
table's primary key so that a repeated message within a batch keeps only its last version
(``ON CONFLICT`` cannot touch one row twice in one statement). Rows are tuples in column
order, turned into COPY text per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stockpipe.common.db import TableWriter, copy_text
from stockpipe.common.messages import INDICATOR_FIELDS, Alert, Bar, Codec, Forecast, Indicators

__all__ = ["Sink", "SINKS"]

Rows = dict[Any, tuple]


@dataclass(frozen=True)
class Sink:
    """One topic kind persisted into one table."""

    kind: str
    codec: Codec
    writer: TableWriter
    add_rows: Callable[[Any, Rows], None]  # message model -> rows (tuples in column order) added by key
    plain: bool  # no free text in the rows: the fast COPY formatting applies (see copy_text)

    def copy_text(self, rows: Rows) -> bytes:
        return copy_text(list(rows.values()), plain=self.plain)


def _bar_rows(b: Bar, rows: Rows) -> None:
    rows[(b.symbol, b.interval, b.ts)] = (
        b.symbol, b.interval, b.ts, b.open, b.high, b.low, b.close, b.volume, b.source)


def _indicator_rows(m: Indicators, rows: Rows) -> None:
    rows[(m.symbol, m.interval, m.ts)] = (
        m.symbol, m.interval, m.ts, m.close, m.rsi, m.sma_short, m.sma_long, m.ema_short, m.ema_long,
        m.bb_upper, m.bb_middle, m.bb_lower, m.macd, m.macd_signal, m.macd_hist, m.volatility)


def _alert_rows(a: Alert, rows: Rows) -> None:
    rows[a.id] = (a.id, a.symbol, a.interval, a.ts, a.rule, a.value, a.threshold, a.message)


def _forecast_rows(f: Forecast, rows: Rows) -> None:
    for p in f.points:
        rows[(f.symbol, f.interval, f.made_at, f.model, p.ts)] = (
            f.symbol, f.interval, f.made_at, f.model, p.ts, p.yhat, p.lo, p.hi)


_KEY = ("symbol", "interval", "ts")

SINKS: dict[str, Sink] = {
    s.kind: s
    for s in (
        Sink("raw", Codec(Bar), TableWriter(
            "price_bars",
            ("symbol", "interval", "ts", "open", "high", "low", "close", "volume", "source"),
            _KEY), _bar_rows, plain=True),
        Sink("indicators", Codec(Indicators), TableWriter(
            "indicators", ("symbol", "interval", "ts", "close", *INDICATOR_FIELDS), _KEY), _indicator_rows,
            plain=True),
        Sink("alerts", Codec(Alert), TableWriter(
            "alerts", ("id", "symbol", "interval", "ts", "rule", "value", "threshold", "message"),
            ("id",)), _alert_rows, plain=False),  # message is free text
        Sink("forecasts", Codec(Forecast), TableWriter(
            "forecasts", ("symbol", "interval", "made_at", "model", "target_ts", "yhat", "lo", "hi"),
            ("symbol", "interval", "made_at", "model", "target_ts")), _forecast_rows,
            plain=False),  # model names hold commas: "arima(1,1,1)"
    )
}
