"""Every SQL statement of the dashboard and the API, and the functions that run them.

Rules kept by every statement here (``tests/integration/test_dashboard_queries.py`` checks
them with ``EXPLAIN`` on a filled database):

- parameterised (psycopg2 ``%(name)s``), never formatted from input;
- served by an index: the primary keys of ``price_bars``/``indicators``/``forecasts`` (symbol,
  interval, ts...), the alert indexes of migrations 0001 and 0002; no sequential scan of a
  big table, whatever its size;
- bounded: a ``LIMIT`` or a time range of one series, and charts are downsampled in
  PostgreSQL (one row per time bucket), so a window of 40,000 bars ships at most
  ``max_points`` rows.

Optional filters are written ``(%(x)s IS NULL OR col = %(x)s)``: psycopg2 sends the values
inline, so the planner folds the unused branch away and picks the matching index.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stockpipe.common.db import Database
from stockpipe.common.messages import INDICATOR_FIELDS, interval_length

__all__ = [
    "SQL",
    "WINDOWS",
    "Reader",
    "Series",
    "Chart",
    "decode_cursor",
    "encode_cursor",
    "CursorError",
]

# Time windows of the charts, as seconds back from the series' last bar (None = everything).
WINDOWS: dict[str, int | None] = {"1h": 3600, "1d": 86_400, "5d": 5 * 86_400, "1mo": 30 * 86_400, "all": None}

_IND_COLS = ", ".join(INDICATOR_FIELDS)
_SERIES_KEY = 'symbol = %(symbol)s AND "interval" = %(interval)s'
_RANGE = "ts >= %(start)s AND ts <= %(end)s"
# The bucket a time falls in: the start of its %(width)s-second bucket since 2000-01-01.
_BUCKET_OF = "date_bin(%(width)s * interval '1 second', {ts}, '2000-01-01')"
_BUCKET = _BUCKET_OF.format(ts="ts")

# The candles of one series' range, one per bucket, in one pass over its primary-key range
# with plain aggregates (hash aggregation over ~2,000 groups): open is the open of the bar
# with the least time, taken as min(ARRAY[epoch, open])[2] (arrays compare element by
# element, and times are unique in a series), close likewise with max; t1 is the bucket's
# last bar. Backend CPU for 40,000 bars (a month of minutes) into 1,906 buckets, PostgreSQL
# 15, on a busy 2-core machine: this ~35 ms; (array_agg(open ORDER BY ts))[1], which sorted
# all 40,000 rows by bucket (spilling past a 4 MB work_mem) and then each bucket, ~65 ms;
# plain min/max(ts) then open and close probed by primary key, ~63 ms; a bare max/min/sum
# over the range, the floor, ~20 ms.
_EPOCH = "date_part('epoch', ts)"
_CANDLES = f"""(
    SELECT {_BUCKET} AS bucket, (min(ARRAY[{_EPOCH}, open]))[2] AS open, max(high) AS high, min(low) AS low,
           (max(ARRAY[{_EPOCH}, close]))[2] AS close, sum(volume)::bigint AS volume, max(ts) AS t1
    FROM price_bars WHERE {_SERIES_KEY} AND {_RANGE} GROUP BY 1) b"""

# The distinct (symbol, interval) pairs by a loose index scan of price_bars' primary key:
# one index probe per series instead of reading every bar.
_SERIES_CTE = """
WITH RECURSIVE s AS (
    (SELECT symbol, "interval" FROM price_bars ORDER BY symbol, "interval" LIMIT 1)
    UNION ALL
    SELECT n.symbol, n."interval" FROM s CROSS JOIN LATERAL (
        SELECT p.symbol, p."interval" FROM price_bars p
        WHERE (p.symbol, p."interval") > (s.symbol, s."interval")
        ORDER BY p.symbol, p."interval" LIMIT 1) n
)"""

SQL: dict[str, str] = {
    # Every series with its first and last bar (API /series, the symbol view's choices).
    "series": _SERIES_CTE + """
SELECT s.symbol, s."interval", f.ts, l.ts, l.close, l.source, c.name
FROM s
CROSS JOIN LATERAL (SELECT ts FROM price_bars p WHERE p.symbol = s.symbol AND p."interval" = s."interval"
                    ORDER BY ts LIMIT 1) f
CROSS JOIN LATERAL (SELECT ts, close, source FROM price_bars p WHERE p.symbol = s.symbol AND p."interval" = s."interval"
                    ORDER BY ts DESC LIMIT 1) l
LEFT JOIN companies c ON c.symbol = s.symbol
WHERE (%(symbol)s IS NULL OR s.symbol = %(symbol)s)
ORDER BY s.symbol, s."interval"
LIMIT %(limit)s""",
    # The overview: per series its last bar, the first bar of the window (the change), the
    # last closes (sparkline) and its latest alerts.
    "overview": _SERIES_CTE + """
SELECT s.symbol, s."interval", l.ts, l.close, l.source, w.close, sp.closes, al.alerts, c.name
FROM s
CROSS JOIN LATERAL (SELECT ts, close, source FROM price_bars p WHERE p.symbol = s.symbol AND p."interval" = s."interval"
                    ORDER BY ts DESC LIMIT 1) l
LEFT JOIN LATERAL (SELECT close FROM price_bars p WHERE p.symbol = s.symbol AND p."interval" = s."interval"
                   AND p.ts >= COALESCE(l.ts - %(span)s * interval '1 second', '-infinity')
                   ORDER BY ts LIMIT 1) w ON true
CROSS JOIN LATERAL (SELECT array_agg(close ORDER BY ts) AS closes FROM (
        SELECT ts, close FROM price_bars p WHERE p.symbol = s.symbol AND p."interval" = s."interval"
        ORDER BY ts DESC LIMIT %(spark)s) t) sp
CROSS JOIN LATERAL (SELECT coalesce(json_agg(json_build_object('ts', a.ts, 'rule', a.rule) ORDER BY a.ts DESC), '[]')
                    AS alerts FROM (
        SELECT ts, rule FROM alerts a WHERE a.symbol = s.symbol AND a."interval" = s."interval"
        ORDER BY ts DESC LIMIT 3) a) al
LEFT JOIN companies c ON c.symbol = s.symbol
ORDER BY s.symbol, s."interval"
LIMIT 1000""",
    "bounds": f"""
SELECT (SELECT ts FROM price_bars WHERE {_SERIES_KEY} ORDER BY ts LIMIT 1),
       (SELECT ts FROM price_bars WHERE {_SERIES_KEY} ORDER BY ts DESC LIMIT 1),
       (SELECT source FROM price_bars WHERE {_SERIES_KEY} ORDER BY ts DESC LIMIT 1)""",
    "bars": f"""
SELECT ts, open, high, low, close, volume, source FROM price_bars
WHERE {_SERIES_KEY} AND {_RANGE} AND ts > %(after)s
ORDER BY ts LIMIT %(limit)s""",
    # One candle per bucket (see _BUCKETS): first open, highest high, lowest low, last close,
    # total volume. The API's /bars?points.
    "bars_bucketed": f"""
SELECT b.bucket, b.open, b.high, b.low, b.close, b.volume,
       (SELECT source FROM price_bars WHERE {_SERIES_KEY} AND {_RANGE} ORDER BY ts DESC LIMIT 1)
FROM {_CANDLES}
ORDER BY b.bucket LIMIT %(limit)s""",
    # The symbol view's downsampled chart in one statement: each bucket's candle, and the
    # indicator values of its last bar that has them (a line's value at the bucket's end),
    # by one primary-key probe per bucket (cheaper than aggregating the wide indicator rows).
    "chart_bucketed": f"""
SELECT b.bucket, b.open, b.high, b.low, b.close, b.volume, i.close, {", ".join("i." + c for c in INDICATOR_FIELDS)}
FROM {_CANDLES} LEFT JOIN LATERAL (
    SELECT close, {_IND_COLS} FROM indicators
    WHERE {_SERIES_KEY} AND ts >= b.bucket AND ts <= b.t1
    ORDER BY ts DESC LIMIT 1) i ON true
ORDER BY b.bucket LIMIT %(limit)s""",
    "indicators": f"""
SELECT ts, close, {_IND_COLS} FROM indicators
WHERE {_SERIES_KEY} AND {_RANGE} AND ts > %(after)s
ORDER BY ts LIMIT %(limit)s""",
    # Indicator values per bucket: those of its last row (what the line shows at the bucket's
    # end): the buckets' last times from one index-only pass, then one probe per bucket.
    "indicators_bucketed": f"""
WITH b AS MATERIALIZED (
    SELECT {_BUCKET} AS bucket, max(ts) AS t1 FROM indicators
    WHERE {_SERIES_KEY} AND {_RANGE} GROUP BY 1)
SELECT b.bucket, i.close, {", ".join("i." + c for c in INDICATOR_FIELDS)}
FROM b CROSS JOIN LATERAL (
    SELECT close, {_IND_COLS} FROM indicators WHERE {_SERIES_KEY} AND ts = b.t1 LIMIT 1) i
ORDER BY b.bucket LIMIT %(limit)s""",
    # Alerts of one series in a window, with the bar's high to place the marker.
    "series_alerts": """
SELECT a.id, a.ts, a.rule, a.value, a.threshold, a.message, b.high
FROM alerts a LEFT JOIN price_bars b ON b.symbol = a.symbol AND b."interval" = a."interval" AND b.ts = a.ts
WHERE a.symbol = %(symbol)s AND a."interval" = %(interval)s AND a.ts >= %(start)s AND a.ts <= %(end)s
ORDER BY a.ts DESC LIMIT %(limit)s""",
    # The feed: newest first, optional filters, cursor (ts, id) of the last row seen.
    "alerts_feed": """
SELECT id, symbol, "interval", ts, rule, value, threshold, message, created_at FROM alerts
WHERE (%(symbol)s IS NULL OR symbol = %(symbol)s)
  AND (%(interval)s IS NULL OR "interval" = %(interval)s)
  AND (%(rule)s IS NULL OR rule = %(rule)s)
  AND ts >= %(start)s AND ts <= %(end)s
  AND (%(cursor_ts)s IS NULL OR (ts, id) < (%(cursor_ts)s, %(cursor_id)s))
ORDER BY ts DESC, id DESC LIMIT %(limit)s""",
    # Distinct alert rules by a loose index scan of alerts (rule, ts, id).
    "alert_rules": """
WITH RECURSIVE r AS (
    (SELECT rule FROM alerts ORDER BY rule LIMIT 1)
    UNION ALL
    SELECT (SELECT a.rule FROM alerts a WHERE a.rule > r.rule ORDER BY a.rule LIMIT 1) FROM r WHERE r.rule IS NOT NULL
)
SELECT rule FROM r WHERE rule IS NOT NULL LIMIT 100""",
    # Forecast points of one series made in [start, end], cursor (made_at, model, target_ts).
    "forecasts": f"""
SELECT made_at, model, target_ts, yhat, lo, hi FROM forecasts
WHERE {_SERIES_KEY} AND made_at >= %(start)s AND made_at <= %(end)s
  AND (%(cursor_made)s IS NULL OR (made_at, model, target_ts) > (%(cursor_made)s, %(cursor_model)s, %(cursor_ts)s))
ORDER BY made_at, model, target_ts LIMIT %(limit)s""",
    # The latest run of every model for one series.
    "latest_forecasts": f"""
SELECT made_at, model, target_ts, yhat, lo, hi FROM forecasts
WHERE {_SERIES_KEY}
  AND made_at = (SELECT made_at FROM forecasts WHERE {_SERIES_KEY} ORDER BY made_at DESC LIMIT 1)
ORDER BY model, target_ts LIMIT 5000""",
    # The model registry, read whole as JSON (minus the artifact) so columns the forecaster
    # adds later show up without a change here.
    "models": """
SELECT to_jsonb(m) - 'artifact' FROM models m
WHERE (%(symbol)s IS NULL OR symbol = %(symbol)s)
  AND (%(cursor_trained)s IS NULL OR (trained_at, id) < (%(cursor_trained)s, %(cursor_id)s))
ORDER BY trained_at DESC, id DESC LIMIT %(limit)s""",
    "last_ts": f"SELECT ts FROM price_bars WHERE {_SERIES_KEY} ORDER BY ts DESC LIMIT 1",
}


class CursorError(ValueError):
    """A paging cursor that this server did not make."""


def encode_cursor(*values: Any) -> str:
    """An opaque cursor from the sort key of the last row of a page."""
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v
                      for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor`, typed by ``kinds``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for kind, value in zip(kinds, values):
            if kind is datetime:
                ts = datetime.fromisoformat(value)
                if ts.tzinfo is None:
                    raise ValueError("naive time")
                out.append(ts.astimezone(UTC))  # PostgreSQL refuses offsets beyond ±15:59
            elif kind is uuid.UUID:
                out.append(str(uuid.UUID(value)))
            elif kind is int:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("not an integer")
                out.append(value)
            else:
                if not isinstance(value, str):
                    raise ValueError("not a string")
                out.append(value)
        return out
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise CursorError(f"invalid cursor: {exc}") from None


@dataclass(frozen=True)
class Series:
    symbol: str
    interval: str
    first_ts: datetime
    last_ts: datetime
    last_close: float
    source: str
    name: str | None


@dataclass(frozen=True)
class Chart:
    """What the symbol view draws for one series and window; columns as lists."""

    symbol: str
    interval: str
    window: str
    start: datetime | None
    end: datetime | None
    source: str | None
    bucket_seconds: int  # 0 = one point per bar (no downsampling)
    bars: dict[str, list]  # ts, open, high, low, close, volume
    indicators: dict[str, list]  # ts, close, and every INDICATOR_FIELDS column
    alerts: list[dict[str, Any]]
    forecasts: list[dict[str, Any]]
    models: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not self.bars["ts"]


_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
INDICATOR_COLUMNS = ("ts", "close", *INDICATOR_FIELDS)


def _columns(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> dict[str, list]:
    cols = list(zip(*rows)) if rows else [() for _ in names]
    return {name: list(col) for name, col in zip(names, cols)}


class Reader:
    """Read-only access to the pipeline's tables; every method is one or a few statements."""

    def __init__(self, db: Database, cursor: Any = None) -> None:
        self.db = db
        self._cursor = cursor

    @contextmanager
    def batch(self) -> Iterator[Reader]:
        """A reader whose statements share one connection and one (read-only) transaction."""
        if self._cursor is not None:
            yield self
            return
        with self.db.transaction() as cur:
            yield Reader(self.db, cur)

    def _all(self, name: str, params: Mapping[str, Any]) -> list[tuple]:
        if self._cursor is not None:
            self._cursor.execute(SQL[name], params)
            return self._cursor.fetchall()
        with self.db.transaction() as cur:
            cur.execute(SQL[name], params)
            return cur.fetchall()

    # -- series
    def series(self, symbol: str | None = None, limit: int = 1000) -> list[Series]:
        rows = self._all("series", {"symbol": symbol, "limit": limit})
        return [Series(*r) for r in rows]

    def overview(self, window: str, spark: int = 120) -> list[dict[str, Any]]:
        rows = self._all("overview", {"span": WINDOWS[window], "spark": spark})
        out = []
        for symbol, interval, ts, close, source, first_close, closes, alerts, name in rows:
            change = (close / first_close - 1.0) if first_close else None
            out.append({"symbol": symbol, "interval": interval, "last_ts": ts, "last_close": close,
                        "source": source, "change": change, "spark": closes or [], "alerts": alerts or [],
                        "name": name})
        return out

    def last_ts(self, symbol: str, interval: str) -> datetime | None:
        rows = self._all("last_ts", {"symbol": symbol, "interval": interval})
        return rows[0][0] if rows else None

    def window_range(self, symbol: str, interval: str, window: str) -> tuple[datetime | None, datetime | None, str | None]:
        """(start, end, source) of ``window`` ending at the series' last bar; Nones when empty."""
        first, last, source = self._all("bounds", {"symbol": symbol, "interval": interval})[0]
        if last is None:
            return None, None, None
        span = WINDOWS[window]
        start = first if span is None else max(first, last - timedelta(seconds=span))
        return start, last, source

    # -- rows
    def bars(self, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None,
             after: datetime | None = None, limit: int = 1000) -> list[tuple]:
        return self._all("bars", {"symbol": symbol, "interval": interval, "start": start or _FAR_PAST,
                                  "end": end or _FAR_FUTURE, "after": after or _FAR_PAST, "limit": limit})

    def bars_bucketed(self, symbol: str, interval: str, start: datetime, end: datetime, width: int,
                      limit: int) -> list[tuple]:
        return self._all("bars_bucketed", {"symbol": symbol, "interval": interval, "start": start, "end": end,
                                           "width": width, "limit": limit})

    def indicators(self, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None,
                   after: datetime | None = None, limit: int = 1000) -> list[tuple]:
        return self._all("indicators", {"symbol": symbol, "interval": interval, "start": start or _FAR_PAST,
                                        "end": end or _FAR_FUTURE, "after": after or _FAR_PAST, "limit": limit})

    def indicators_bucketed(self, symbol: str, interval: str, start: datetime, end: datetime, width: int,
                            limit: int) -> list[tuple]:
        return self._all("indicators_bucketed", {"symbol": symbol, "interval": interval, "start": start,
                                                 "end": end, "width": width, "limit": limit})

    def series_alerts(self, symbol: str, interval: str, start: datetime, end: datetime,
                      limit: int = 500) -> list[dict[str, Any]]:
        rows = self._all("series_alerts", {"symbol": symbol, "interval": interval, "start": start, "end": end,
                                           "limit": limit})
        keys = ("id", "ts", "rule", "value", "threshold", "message", "high")
        return [dict(zip(keys, r)) for r in rows]

    def alerts_feed(self, *, symbol: str | None = None, interval: str | None = None, rule: str | None = None,
                    start: datetime | None = None, end: datetime | None = None,
                    cursor: tuple[datetime, str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._all("alerts_feed", {
            "symbol": symbol, "interval": interval, "rule": rule, "start": start or _FAR_PAST,
            "end": end or _FAR_FUTURE, "cursor_ts": cursor[0] if cursor else None,
            "cursor_id": cursor[1] if cursor else None, "limit": limit})
        keys = ("id", "symbol", "interval", "ts", "rule", "value", "threshold", "message", "created_at")
        return [dict(zip(keys, r)) for r in rows]

    def alert_rules(self) -> list[str]:
        return [r[0] for r in self._all("alert_rules", {})]

    def forecasts(self, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None,
                  cursor: tuple[datetime, str, datetime] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._all("forecasts", {
            "symbol": symbol, "interval": interval, "start": start or _FAR_PAST, "end": end or _FAR_FUTURE,
            "cursor_made": cursor[0] if cursor else None, "cursor_model": cursor[1] if cursor else None,
            "cursor_ts": cursor[2] if cursor else None, "limit": limit})
        keys = ("made_at", "model", "target_ts", "yhat", "lo", "hi")
        return [dict(zip(keys, r)) for r in rows]

    def latest_forecasts(self, symbol: str, interval: str) -> list[dict[str, Any]]:
        rows = self._all("latest_forecasts", {"symbol": symbol, "interval": interval})
        keys = ("made_at", "model", "target_ts", "yhat", "lo", "hi")
        return [dict(zip(keys, r)) for r in rows]

    def models(self, symbol: str | None = None, cursor: tuple[datetime, int] | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
        rows = self._all("models", {"symbol": symbol, "cursor_trained": cursor[0] if cursor else None,
                                    "cursor_id": cursor[1] if cursor else None, "limit": limit})
        return [r[0] for r in rows]

    # -- the symbol view
    def chart(self, symbol: str, interval: str, window: str, max_points: int) -> Chart:
        """Everything the symbol view draws, downsampled to at most ``max_points`` buckets.

        A window of more bars than ``max_points`` becomes buckets of :func:`bucket_width`
        seconds, each an honest candle of its bars (open of the first, highest high, lowest
        low, close of the last, summed volume) stamped with the bucket's start; the indicator
        lines take, per bucket, the values of its last bar that has indicators (what the line
        reads at the bucket's end; null while warming up). Both come from one statement.
        """
        with self.batch() as reader:
            return reader._chart(symbol, interval, window, max_points)

    def _chart(self, symbol: str, interval: str, window: str, max_points: int) -> Chart:
        start, end, source = self.window_range(symbol, interval, window)
        if end is None:
            empty_bars = {c: [] for c in BAR_COLUMNS}
            empty_ind = {c: [] for c in INDICATOR_COLUMNS}
            return Chart(symbol, interval, window, None, None, None, 0, empty_bars, empty_ind, [], [], [])
        step = interval_length(interval).total_seconds()
        span = (end - start).total_seconds()
        width = bucket_width(span, step, max_points)
        if width:
            rows = self._all("chart_bucketed", {"symbol": symbol, "interval": interval, "start": start,
                                                "end": end, "width": width, "limit": max_points + 1})
            # One row per bucket: bar columns, then indicator columns. Both share one ts list
            # (figures converts it once).
            cols = _columns(rows, (*BAR_COLUMNS, *INDICATOR_COLUMNS[1:]))
            bars = {c: cols[c] for c in BAR_COLUMNS}
            ind = {"ts": cols["ts"], **{c: cols[c] for c in INDICATOR_COLUMNS[1:]}}
        else:
            bars = _columns(self.bars(symbol, interval, start, end, limit=max_points + 1), BAR_COLUMNS)
            ind = _columns(self.indicators(symbol, interval, start, end, limit=max_points + 1), INDICATOR_COLUMNS)
        alerts = self.series_alerts(symbol, interval, start, end)
        forecasts = self.latest_forecasts(symbol, interval)
        models = self.models(symbol, limit=20)
        return Chart(symbol, interval, window, start, end, source, width, bars, ind, alerts, forecasts, models)


def bucket_width(span_seconds: float, step_seconds: float, max_points: int) -> int:
    """Seconds per bucket so that ``span_seconds`` of bars fit in ``max_points`` buckets; 0 = no need.

    A whole number of bar intervals, so each bucket holds whole bars.
    """
    bars = span_seconds / step_seconds + 1
    if bars <= max_points:
        return 0
    per_bucket = int(-(-bars // max_points))  # ceil
    # Aligned buckets can split a run of bars unevenly: one more bar per bucket keeps the
    # count under max_points whatever the alignment.
    return int((per_bucket + 1) * step_seconds)
