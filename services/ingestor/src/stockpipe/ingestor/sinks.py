"""Topic → table mappings: how each message becomes rows (all SQL of the ingestor is here).

A sink decodes a message into its v1 model and adds its rows to a batch, keyed by the
table's primary key so that a repeated message within a batch keeps only its last version
(``ON CONFLICT`` cannot touch one row twice in one statement). Rows are COPY text lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stockpipe.common.db import TableWriter, copy_field
from stockpipe.common.messages import INDICATOR_FIELDS, Alert, Bar, Codec, Forecast, Indicators

__all__ = ["Sink", "SINKS"]

Rows = dict[Any, str]


@dataclass(frozen=True)
class Sink:
    """One topic kind persisted into one table."""

    kind: str
    codec: Codec
    writer: TableWriter
    add_rows: Callable[[Any, Rows], None]  # message model -> rows added to the batch


def _bar_rows(b: Bar, rows: Rows) -> None:
    # Symbol, interval and source are validated against patterns without tabs or
    # backslashes, so they need no COPY escaping; repr() of a finite float round-trips.
    rows[(b.symbol, b.interval, b.ts)] = (
        f"{b.symbol}\t{b.interval}\t{b.ts.isoformat()}\t{b.open!r}\t{b.high!r}\t{b.low!r}"
        f"\t{b.close!r}\t{b.volume}\t{b.source}\n"
    )


def _indicator_rows(m: Indicators, rows: Rows) -> None:
    values = "\t".join(copy_field(getattr(m, f)) for f in INDICATOR_FIELDS)
    rows[(m.symbol, m.interval, m.ts)] = f"{m.symbol}\t{m.interval}\t{m.ts.isoformat()}\t{m.close!r}\t{values}\n"


def _alert_rows(a: Alert, rows: Rows) -> None:
    rows[a.id] = "\t".join(map(copy_field, (
        a.id, a.symbol, a.interval, a.ts, a.rule, a.value, a.threshold, a.message))) + "\n"


def _forecast_rows(f: Forecast, rows: Rows) -> None:
    head = f"{f.symbol}\t{f.interval}\t{f.made_at.isoformat()}\t{copy_field(f.model)}\t"
    for p in f.points:
        rows[(f.symbol, f.interval, f.made_at, f.model, p.ts)] = (
            head + "\t".join(map(copy_field, (p.ts, p.yhat, p.lo, p.hi))) + "\n"
        )


_KEY = ("symbol", "interval", "ts")

SINKS: dict[str, Sink] = {
    s.kind: s
    for s in (
        Sink("raw", Codec(Bar), TableWriter(
            "price_bars",
            ("symbol", "interval", "ts", "open", "high", "low", "close", "volume", "source"),
            _KEY), _bar_rows),
        Sink("indicators", Codec(Indicators), TableWriter(
            "indicators", ("symbol", "interval", "ts", "close", *INDICATOR_FIELDS), _KEY), _indicator_rows),
        Sink("alerts", Codec(Alert), TableWriter(
            "alerts", ("id", "symbol", "interval", "ts", "rule", "value", "threshold", "message"),
            ("id",)), _alert_rows),
        Sink("forecasts", Codec(Forecast), TableWriter(
            "forecasts", ("symbol", "interval", "made_at", "model", "target_ts", "yhat", "lo", "hi"),
            ("symbol", "interval", "made_at", "model", "target_ts")), _forecast_rows),
    )
}
