"""The model registry in PostgreSQL's ``models`` table: all of the forecaster's SQL.

One row per (symbol, interval, kind, window_end): ``kind`` is ``arima`` (whose params may be
the naive fallback: ``params.kind`` says which) or ``linreg``; ``window_end`` is the ts of the
bar the model was trained at (its forecasts' ``made_at``), so a replay that trains the same
model again finds it instead of writing a second row. ``params`` holds the parameters (order,
coefficients, sigma², features), ``metrics`` the rolling-origin track record of that kind of
model on that series when it was trained (see :mod:`stockpipe.forecaster.evaluation`) and,
for the regression, its held-out score. ``artifact`` is the serialised model: UTF-8 JSON
``{"format": "stockpipe-model/1", "params": ...}``, loaded by ``json.loads`` (never pickle),
from which the model forecasts exactly as when it was fitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stockpipe.common.db import Database
from stockpipe.common.errors import StockpipeError

__all__ = ["ModelRecord", "Registry", "ARTIFACT_FORMAT"]

ARTIFACT_FORMAT = "stockpipe-model/1"


@dataclass(frozen=True)
class ModelRecord:
    symbol: str
    interval: str
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    window_start: datetime
    window_end: datetime
    n_obs: int
    trained_at: datetime | None = None  # set by the database on insert (wall clock)


def _artifact(params: dict[str, Any]) -> bytes:
    return json.dumps({"format": ARTIFACT_FORMAT, "params": params}, allow_nan=False).encode()


def _load_artifact(data: bytes | memoryview | None) -> dict[str, Any]:
    if data is None:
        raise StockpipeError("model row without artifact")
    doc = json.loads(bytes(data).decode())
    if doc.get("format") != ARTIFACT_FORMAT:
        raise StockpipeError(f"unknown model artifact format {doc.get('format')!r}")
    return doc["params"]


_COLUMNS = 'symbol, "interval", kind, params, metrics, artifact, window_start, window_end, n_obs, trained_at'


def _record(row: tuple) -> ModelRecord:
    symbol, interval, kind, _params, metrics, artifact, start, end, n_obs, trained_at = row
    return ModelRecord(symbol, interval, kind, _load_artifact(artifact), metrics or {}, start, end, n_obs, trained_at)


class Registry:
    """Saves and finds models; every call is one short transaction (TransientError on outage)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, rec: ModelRecord) -> bool:
        """Insert the model unless its (series, kind, window_end) is there; True if written."""
        with self.db.transaction() as cur:
            cur.execute(
                'INSERT INTO models (symbol, "interval", kind, params, metrics, artifact, window_start, window_end, '
                "n_obs) VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s) "
                'ON CONFLICT (symbol, "interval", kind, window_end) DO NOTHING',
                (rec.symbol, rec.interval, rec.kind, json.dumps(rec.params, allow_nan=False),
                 json.dumps(rec.metrics, allow_nan=False), _artifact(rec.params), rec.window_start,
                 rec.window_end, rec.n_obs))
            return cur.rowcount == 1

    def find(self, symbol: str, interval: str, kind: str, window_end: datetime) -> ModelRecord | None:
        """The model trained at ``window_end``, if the registry has it."""
        with self.db.transaction() as cur:
            cur.execute(f'SELECT {_COLUMNS} FROM models WHERE symbol = %s AND "interval" = %s AND kind = %s '
                        "AND window_end = %s", (symbol, interval, kind, window_end))
            row = cur.fetchone()
        return _record(row) if row else None

    def latest(self, until: dict[tuple[str, str], datetime], kind: str) -> dict[tuple[str, str], ModelRecord]:
        """Per series (symbol, interval) -> ts: the model of ``kind`` with the latest window_end <= ts."""
        if not until:
            return {}
        keys = list(until)
        cols = ", ".join("m." + c.strip() for c in _COLUMNS.split(","))
        with self.db.transaction() as cur:
            cur.execute(
                f'SELECT DISTINCT ON (m.symbol, m."interval") {cols} '
                'FROM models m JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS s(symbol, "interval", ts) '
                'ON m.symbol = s.symbol AND m."interval" = s."interval" AND m.window_end <= s.ts '
                'WHERE m.kind = %s ORDER BY m.symbol, m."interval", m.window_end DESC',
                ([k[0] for k in keys], [k[1] for k in keys], [until[k] for k in keys], kind))
            rows = cur.fetchall()
        return {(r[0], r[1]): _record(r) for r in rows}
