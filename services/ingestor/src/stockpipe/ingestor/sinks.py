"""Topic → table mappings: how each message becomes rows (all SQL of the ingestor is here).

A sink decodes a message into its v1 model and appends its rows to the batch: tuples in
column order, or for bars and indicators the message itself (its fields are the columns).
The table writer turns a batch into COPY data (binary for bars and indicators, else text); a
key repeated within a batch keeps its first row (messages are final: the first one wins,
DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec.inspect
from msgspec.structs import astuple

from stockpipe.common.db import TableWriter
from stockpipe.common.messages import Alert, Bar, Codec, Forecast, Indicators
from stockpipe.ingestor.binary import BinaryRows

__all__ = ["Sink", "SINKS"]

Rows = list[Any]  # tuples in the writer's column order, or messages whose fields are its columns


@dataclass(frozen=True)
class Sink:
    """One topic kind persisted into one table."""

    kind: str
    codec: Codec
    writer: TableWriter
    add_rows: Callable[[Any, Rows], None]  # message model -> rows appended (see Rows)
    add_all: Callable[[list[Any], Rows], None]  # add_rows of each model in a list, in order


def _each(add_rows: Callable[[Any, Rows], None]) -> Callable[[list[Any], Rows], None]:
    def add_all(models: list[Any], rows: Rows) -> None:
        for m in models:
            add_rows(m, rows)
    return add_all


# Bars and indicators: the message's fields are the table's columns in the same order,
# after ``v``, so the message itself is the row: the binary format reads its columns by
# attribute, and the text format makes the tuple (msgspec's C astuple).
def _struct_row(m: Any, rows: Rows) -> None:
    rows.append(m)


def _struct_rows(models: list[Any], rows: Rows) -> None:
    rows.extend(models)


def _alert_rows(a: Alert, rows: Rows) -> None:
    rows.append((a.id, a.symbol, a.interval, a.ts, a.rule, a.value, a.threshold, a.message))


def _forecast_rows(f: Forecast, rows: Rows) -> None:
    for p in f.points:
        rows.append((f.symbol, f.interval, f.made_at, f.model, p.ts, p.yhat, p.lo, p.hi))


def _fields(model: type) -> tuple[str, ...]:
    names = model.__struct_fields__
    assert names[0] == "v"
    return names[1:]


_KEY = ("symbol", "interval", "ts")


def _binary(model: type) -> BinaryRows:
    """The binary COPY format of messages as rows, from their field types, grouped by symbol
    (the leading column of the table's key: see BinaryRows)."""
    kinds = []
    for f in msgspec.inspect.type_info(model).fields[1:]:  # after v
        t = f.type
        nullable = isinstance(t, msgspec.inspect.UnionType) and any(
            isinstance(x, msgspec.inspect.NoneType) for x in t.types)
        if nullable:
            t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
        kind = {msgspec.inspect.StrType: "text", msgspec.inspect.LiteralType: "text",
                msgspec.inspect.DateTimeType: "timestamptz", msgspec.inspect.FloatType: "float8",
                msgspec.inspect.IntType: "int8"}[type(t)]
        kinds.append(kind + "?" if nullable else kind)
    fields = _fields(model)
    assert fields[0] == _KEY[0] == "symbol"
    return BinaryRows(kinds, fields=fields, cluster=0)


SINKS: dict[str, Sink] = {
    s.kind: s
    for s in (
        # Bars and indicators hold no free text: the fast COPY formats apply (binary, and
        # plain text for a batch binary cannot hold).
        Sink("raw", Codec(Bar), TableWriter("price_bars", _fields(Bar), _KEY, plain=True, versioned=True,
                                            binary=_binary(Bar), as_tuple=astuple), _struct_row, _struct_rows),
        Sink("indicators", Codec(Indicators), TableWriter("indicators", _fields(Indicators), _KEY, plain=True,
                                                          versioned=True, binary=_binary(Indicators), as_tuple=astuple),
             _struct_row, _struct_rows),
        Sink("alerts", Codec(Alert), TableWriter(
            "alerts", ("id", "symbol", "interval", "ts", "rule", "value", "threshold", "message"), ("id",)),
            _alert_rows, _each(_alert_rows)),
        Sink("forecasts", Codec(Forecast), TableWriter(
            "forecasts", ("symbol", "interval", "made_at", "model", "target_ts", "yhat", "lo", "hi"),
            ("symbol", "interval", "made_at", "model", "target_ts")), _forecast_rows, _each(_forecast_rows)),
    )
}
