"""The REST API under ``/api/v1`` (flask-smorest): the OpenAPI document comes from this code.

Every list endpoint answers ``{"items": [...], "next_cursor": "..." | null}``; pass
``next_cursor`` back as ``cursor`` for the next page. Bad parameters get a JSON 4xx:
422 with the offending fields for invalid values, 400 for a cursor this server did not make.
Rows are serialised with msgspec straight from the database tuples (the documented schemas
describe exactly that), since marshmallow would spend more time on 5,000 bars than PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from stockpipe.common.messages import INDICATOR_FIELDS, INTERVAL_PATTERN, SYMBOL_PATTERN, interval_length
from stockpipe.dashboard.queries import (
    BAR_COLUMNS,
    INDICATOR_COLUMNS,
    CursorError,
    Reader,
    bucket_width,
    decode_cursor,
    encode_cursor,
)

__all__ = ["blueprint", "MAX_LIMIT"]

MAX_LIMIT = {"bars": 5000, "indicators": 5000, "alerts": 1000, "forecasts": 5000, "models": 500, "series": 1000}

blueprint = Blueprint("api", __name__, url_prefix="/api/v1",
                      description="Read the pipeline's bars, indicators, alerts, forecasts and models.")

_ENCODER = msgspec.json.Encoder()


def _full(pattern: str) -> list:
    """A pattern matched in full: ``$`` alone also matches before a trailing newline."""
    def no_newline(value: str) -> None:
        if value.endswith("\n"):
            raise ValidationError("String does not match expected pattern.")
    return [validate.Regexp(pattern), no_newline]


_SYMBOL, _INTERVAL, _RULE = _full(SYMBOL_PATTERN), _full(INTERVAL_PATTERN), _full(r"^[a-z][a-z0-9_]{0,63}$")


def _reader() -> Reader:
    return current_app.extensions["stockpipe_reader"]


def _json(body: dict[str, Any]) -> Response:
    return Response(_ENCODER.encode(body), mimetype="application/json")


# -- parameters
class _Args(Schema):
    class Meta:
        ordered = True


def _symbol(required: bool) -> fields.String:
    return fields.String(required=required, validate=_SYMBOL,
                         metadata={"description": "ticker, e.g. AAPL", "example": "AAPL"})


def _interval(required: bool = False) -> fields.String:
    kwargs: dict[str, Any] = {"required": True} if required else {"load_default": "1m"}
    return fields.String(validate=_INTERVAL,
                         metadata={"description": "bar interval", "example": "1m"}, **kwargs)


def _limit(kind: str, default: int) -> fields.Integer:
    return fields.Integer(load_default=default, validate=validate.Range(1, MAX_LIMIT[kind]),
                          metadata={"description": f"rows per page (1..{MAX_LIMIT[kind]})"})


class _UtcDateTime(fields.AwareDateTime):
    """An RFC 3339 time, normalised to UTC here: PostgreSQL refuses offsets beyond ±15:59."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        ts = super()._deserialize(value, attr, data, **kwargs)
        try:
            return ts.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
            raise ValidationError("Not a valid datetime: out of range in UTC.") from None


def _time(description: str, key: str) -> fields.AwareDateTime:
    # A time without an offset is taken as UTC, as everywhere in stockpipe. `from` and `to`
    # are Python keywords: the fields are start/end, named from/to on the wire.
    rule = "; not after `to`" if key == "from" else ""
    return _UtcDateTime(load_default=None, default_timezone=UTC, data_key=key,
                        metadata={"description": description + f" (RFC 3339; no offset = UTC{rule})"})


_CURSOR = fields.String(load_default=None, validate=validate.Length(1, 500),
                        metadata={"description": "next_cursor of the previous page"})


class _RangeArgs(_Args):
    @validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None and start > end:
            raise ValidationError("from must not be after to", "from")


class SeriesArgs(_Args):
    symbol = _symbol(False)
    limit = _limit("series", 1000)


class BarsArgs(_RangeArgs):
    symbol = _symbol(True)
    interval = _interval()
    start = _time("first bar start included", "from")
    end = _time("last bar start included", "to")
    limit = _limit("bars", 1000)
    cursor = _CURSOR
    points = fields.Integer(load_default=None, validate=validate.Range(50, 5000), metadata={
        "description": "downsample [from, to] to at most this many buckets (OHLC of each bucket); no paging"})


class IndicatorsArgs(BarsArgs):
    pass


class AlertsArgs(_RangeArgs):
    symbol = _symbol(False)
    interval = fields.String(load_default=None, validate=_INTERVAL,
                             metadata={"description": "bar interval"})
    rule = fields.String(load_default=None, validate=_RULE,
                         metadata={"description": "alert rule, e.g. rsi_overbought"})
    start = _time("earliest alert bar time", "from")
    end = _time("latest alert bar time", "to")
    limit = _limit("alerts", 100)
    cursor = _CURSOR


class ForecastsArgs(_RangeArgs):
    symbol = _symbol(True)
    interval = _interval()
    start = _time("earliest made_at", "from")
    end = _time("latest made_at", "to")
    latest = fields.Boolean(load_default=False, metadata={"description": "only the latest run (no paging)"})
    limit = _limit("forecasts", 1000)
    cursor = _CURSOR


class ModelsArgs(_Args):
    symbol = _symbol(False)
    limit = _limit("models", 100)
    cursor = _CURSOR


# -- responses (documentation of what the views encode)
_NEXT = fields.String(allow_none=True, required=True, metadata={"description": "cursor of the next page, or null"})
_TS = fields.DateTime(required=True)
_NUM = fields.Float(allow_none=True, required=True)


class SeriesItem(Schema):
    symbol = fields.String(required=True)
    interval = fields.String(required=True)
    first_ts = _TS
    last_ts = _TS
    last_close = fields.Float(required=True)
    source = fields.String(required=True, metadata={"description": "yfinance | synthetic | replay"})
    simulated = fields.Boolean(required=True, metadata={"description": "true when the bars are synthetic"})
    name = fields.String(allow_none=True, required=True)


class SeriesPage(Schema):
    items = fields.List(fields.Nested(SeriesItem), required=True)
    next_cursor = _NEXT


class SymbolItem(Schema):
    symbol = fields.String(required=True)
    name = fields.String(allow_none=True, required=True)
    intervals = fields.List(fields.String(), required=True)


class SymbolsPage(Schema):
    items = fields.List(fields.Nested(SymbolItem), required=True)
    next_cursor = _NEXT


class Bar(Schema):
    ts = _TS
    open = fields.Float(required=True)
    high = fields.Float(required=True)
    low = fields.Float(required=True)
    close = fields.Float(required=True)
    volume = fields.Integer(required=True)


class BarsPage(Schema):
    symbol = fields.String(required=True)
    interval = fields.String(required=True)
    source = fields.String(allow_none=True, required=True)
    bucket_seconds = fields.Integer(required=True, metadata={"description": "0 = one row per bar"})
    items = fields.List(fields.Nested(Bar), required=True)
    next_cursor = _NEXT


IndicatorRow = Schema.from_dict({"ts": _TS, "close": fields.Float(required=True),
                                 **{name: _NUM for name in INDICATOR_FIELDS}}, name="IndicatorRow")


class IndicatorsPage(Schema):
    symbol = fields.String(required=True)
    interval = fields.String(required=True)
    bucket_seconds = fields.Integer(required=True)
    items = fields.List(fields.Nested(IndicatorRow), required=True)
    next_cursor = _NEXT


class AlertItem(Schema):
    id = fields.UUID(required=True)
    symbol = fields.String(required=True)
    interval = fields.String(required=True)
    ts = _TS
    rule = fields.String(required=True)
    value = fields.Float(required=True)
    threshold = fields.Float(required=True)
    message = fields.String(required=True)
    created_at = _TS


class AlertsPage(Schema):
    items = fields.List(fields.Nested(AlertItem), required=True)
    next_cursor = _NEXT


class ForecastPoint(Schema):
    made_at = _TS
    model = fields.String(required=True)
    target_ts = _TS
    yhat = fields.Float(required=True)
    lo = _NUM
    hi = _NUM


class ForecastsPage(Schema):
    items = fields.List(fields.Nested(ForecastPoint), required=True)
    next_cursor = _NEXT


class ModelItem(Schema):
    id = fields.Integer(required=True)
    symbol = fields.String(required=True)
    kind = fields.String(required=True)
    params = fields.Dict(required=True)
    metrics = fields.Dict(required=True, metadata={"description": "accuracy figures (e.g. mase, coverage)"})
    trained_at = fields.String(required=True, metadata={"description": "RFC 3339"})
    # The forecaster's registry columns (migration 0003).
    interval = fields.String(required=True)
    window_start = fields.String(allow_none=True, metadata={"description": "first bar of the training window, RFC 3339"})
    window_end = fields.String(allow_none=True, metadata={"description": "last bar of the training window, RFC 3339"})
    n_obs = fields.Integer(allow_none=True, metadata={"description": "bars the model was trained on"})


class ModelsPage(Schema):
    items = fields.List(fields.Nested(ModelItem), required=True)
    next_cursor = _NEXT


def _cursor(raw: str | None, kinds: list[type]) -> list[Any] | None:
    if raw is None:
        return None
    try:
        return decode_cursor(raw, kinds)
    except CursorError as exc:
        abort(400, message=str(exc))


# -- endpoints
@blueprint.route("/series")
class SeriesView(MethodView):
    @blueprint.arguments(SeriesArgs, location="query")
    @blueprint.response(200, SeriesPage)
    def get(self, args: dict[str, Any]) -> Response:
        """Every series (symbol, interval) with its first and last bar"""
        rows = _reader().series(args.get("symbol"), limit=args["limit"])
        return _json({"items": [{"symbol": s.symbol, "interval": s.interval, "first_ts": s.first_ts,
                                 "last_ts": s.last_ts, "last_close": s.last_close, "source": s.source,
                                 "simulated": s.source == "synthetic", "name": s.name} for s in rows],
                      "next_cursor": None})


@blueprint.route("/symbols")
class SymbolsView(MethodView):
    @blueprint.response(200, SymbolsPage)
    def get(self) -> Response:
        """Every symbol with the intervals it has bars for"""
        out: dict[str, dict[str, Any]] = {}
        for s in _reader().series(limit=MAX_LIMIT["series"]):
            out.setdefault(s.symbol, {"symbol": s.symbol, "name": s.name, "intervals": []})["intervals"].append(s.interval)
        return _json({"items": list(out.values()), "next_cursor": None})


def _check_interval(interval: str) -> None:
    try:
        interval_length(interval)
    except (KeyError, ValueError):  # pragma: no cover - the pattern admits only known units
        abort(422, errors={"query": {"interval": ["unknown interval unit"]}})


@blueprint.route("/bars")
class BarsView(MethodView):
    @blueprint.arguments(BarsArgs, location="query")
    @blueprint.response(200, BarsPage)
    def get(self, args: dict[str, Any]) -> Response:
        """OHLCV bars of one series, oldest first; `points` downsamples the range"""
        return _rows("bars", args)


@blueprint.route("/indicators")
class IndicatorsView(MethodView):
    @blueprint.arguments(IndicatorsArgs, location="query")
    @blueprint.response(200, IndicatorsPage)
    def get(self, args: dict[str, Any]) -> Response:
        """Indicator values of one series, oldest first (null while warming up)"""
        return _rows("indicators", args)


def _rows(kind: str, args: dict[str, Any]) -> Response:
    reader = _reader()
    symbol, interval = args["symbol"], args["interval"]
    _check_interval(interval)
    columns = BAR_COLUMNS if kind == "bars" else INDICATOR_COLUMNS
    body: dict[str, Any] = {"symbol": symbol, "interval": interval}
    start, end = args.get("start"), args.get("end")
    if args.get("points"):
        if args.get("cursor"):
            abort(422, errors={"query": {"cursor": ["not with points: a downsampled range is one page"]}})
        first, last, source = reader.window_range(symbol, interval, "all")
        lo = max(start, first) if (start and first) else (start or first)
        hi = min(end, last) if (end and last) else (end or last)
        width = bucket_width((hi - lo).total_seconds(), interval_length(interval).total_seconds(),
                             args["points"]) if (lo and hi and lo <= hi) else 0
        if lo is None or hi is None or lo > hi:
            rows: list[tuple] = []
        elif width:
            fetch = reader.bars_bucketed if kind == "bars" else reader.indicators_bucketed
            rows = fetch(symbol, interval, lo, hi, width, args["points"])
        else:
            fetch = reader.bars if kind == "bars" else reader.indicators
            rows = fetch(symbol, interval, lo, hi, limit=args["points"])
        body["bucket_seconds"] = width
        next_cursor = None
    else:
        after = _cursor(args.get("cursor"), [datetime])
        fetch = reader.bars if kind == "bars" else reader.indicators
        rows = fetch(symbol, interval, start, end, after=after[0] if after else None, limit=args["limit"] + 1)
        body["bucket_seconds"] = 0
        more = len(rows) > args["limit"]
        rows = rows[:args["limit"]]
        next_cursor = encode_cursor(rows[-1][0]) if more else None
        source = rows[-1][6] if (kind == "bars" and rows) else None
    if kind == "bars":
        body["source"] = source if rows else None
    body["items"] = [dict(zip(columns, r)) for r in rows]
    body["next_cursor"] = next_cursor
    return _json(body)


@blueprint.route("/alerts")
class AlertsView(MethodView):
    @blueprint.arguments(AlertsArgs, location="query")
    @blueprint.response(200, AlertsPage)
    def get(self, args: dict[str, Any]) -> Response:
        """Alerts, newest first, filtered by symbol, interval and rule"""
        cursor = _cursor(args.get("cursor"), [datetime, uuid.UUID])
        rows = _reader().alerts_feed(symbol=args.get("symbol"), interval=args.get("interval"), rule=args.get("rule"),
                                     start=args.get("start"), end=args.get("end"),
                                     cursor=tuple(cursor) if cursor else None, limit=args["limit"] + 1)
        more = len(rows) > args["limit"]
        rows = rows[:args["limit"]]
        return _json({"items": rows, "next_cursor": encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more else None})


@blueprint.route("/forecasts")
class ForecastsView(MethodView):
    @blueprint.arguments(ForecastsArgs, location="query")
    @blueprint.response(200, ForecastsPage)
    def get(self, args: dict[str, Any]) -> Response:
        """Forecast points of one series by run (made_at), model and target time"""
        reader = _reader()
        if args["latest"]:
            if args.get("cursor"):
                abort(422, errors={"query": {"cursor": ["not with latest: the latest run is one page"]}})
            return _json({"items": reader.latest_forecasts(args["symbol"], args["interval"]), "next_cursor": None})
        cursor = _cursor(args.get("cursor"), [datetime, str, datetime])
        rows = reader.forecasts(args["symbol"], args["interval"], args.get("start"), args.get("end"),
                                cursor=tuple(cursor) if cursor else None, limit=args["limit"] + 1)
        more = len(rows) > args["limit"]
        rows = rows[:args["limit"]]
        last = rows[-1] if rows else None
        return _json({"items": rows, "next_cursor": encode_cursor(last["made_at"], last["model"], last["target_ts"])
                      if more else None})


@blueprint.route("/models")
class ModelsView(MethodView):
    @blueprint.arguments(ModelsArgs, location="query")
    @blueprint.response(200, ModelsPage)
    def get(self, args: dict[str, Any]) -> Response:
        """The forecaster's model registry, newest first (artifacts left out)"""
        cursor = _cursor(args.get("cursor"), [datetime, int])
        rows = _reader().models(args.get("symbol"), cursor=tuple(cursor) if cursor else None, limit=args["limit"] + 1)
        more = len(rows) > args["limit"]
        rows = rows[:args["limit"]]
        next_cursor = None
        if more:
            next_cursor = encode_cursor(datetime.fromisoformat(rows[-1]["trained_at"]), rows[-1]["id"])
        return _json({"items": rows, "next_cursor": next_cursor})
