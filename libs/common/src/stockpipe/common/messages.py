"""Version 1 of the messages on stockpipe's topics (DESIGN.md, "Message schema").

Each message is a frozen :mod:`msgspec` Struct: decoding JSON straight into it validates
types and constraints in one pass (about 0.5 µs for a bar), and encoding is as fast.
Unknown fields are ignored (forward compatible); a missing required field is invalid.

>>> codec = Codec(Bar)
>>> bar = codec.decode(raw_bytes)      # raises InvalidMessage with a reason
>>> codec.encode(bar)                  # bytes
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from stockpipe.common.errors import InvalidMessage

__all__ = [
    "SCHEMA_VERSION",
    "SYMBOL_PATTERN",
    "INTERVAL_PATTERN",
    "Bar",
    "Indicators",
    "Alert",
    "ForecastPoint",
    "Forecast",
    "Codec",
    "DECODE_ERRORS",
    "alert_id",
    "interval_length",
    "INDICATOR_FIELDS",
]

SCHEMA_VERSION = 1
SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9.^=-]{0,14}$"
# yfinance's intervals: 1m 2m 5m 15m 30m 60m 90m 1h 1d 5d 1wk 1mo 3mo.
INTERVAL_PATTERN = r"^[1-9][0-9]{0,3}(m|h|d|wk|mo)$"

# Symbols and intervals are checked against their patterns in __post_init__ through a
# cache of names already seen valid: the same few thousand names repeat in every message,
# and a regex match per field was a third of the decoding time.
Symbol = Annotated[str, Meta(min_length=1, max_length=15)]
Interval = Annotated[str, Meta(min_length=2, max_length=6)]
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_INTERVAL_RE = re.compile(INTERVAL_PATTERN)
_valid_symbols: set[str] = set()
_valid_intervals: set[str] = set()
_MAX_CACHED = 200_000  # names; a bound on memory if a feed invents symbols


def _check_names(symbol: str, interval: str) -> None:
    if symbol not in _valid_symbols:
        if not _SYMBOL_RE.match(symbol):
            raise ValueError(f"symbol {symbol!r} does not match {SYMBOL_PATTERN}")
        if len(_valid_symbols) >= _MAX_CACHED:
            _valid_symbols.clear()
        _valid_symbols.add(symbol)
    if interval not in _valid_intervals:
        if not _INTERVAL_RE.match(interval):
            raise ValueError(f"interval {interval!r} does not match {INTERVAL_PATTERN}")
        _valid_intervals.add(interval)
Price = Annotated[float, Meta(gt=0)]
Source = Literal["yfinance", "synthetic", "replay"]


# RFC 3339 needs an offset: a naive time is rejected while decoding (checked in C).
Timestamp = Annotated[datetime, Meta(tz=True)]
_INF = math.inf


class Bar(msgspec.Struct, frozen=True, kw_only=True):
    """One final OHLCV bar on ``raw``; ``ts`` is the bar's start, ``volume`` in shares."""

    v: Literal[1] = 1
    symbol: Symbol
    ts: Timestamp
    interval: Interval
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[int, Meta(ge=0)]
    source: Source

    def __post_init__(self) -> None:
        # One chained comparison on the hot path (decoding runs it for every bar). Prices
        # are > 0 already, so high < inf makes all four finite; JSON cannot spell NaN.
        _check_names(self.symbol, self.interval)
        o, h, lo, c = self.open, self.high, self.low, self.close
        if not (lo <= o <= h and lo <= c <= h and h < _INF):
            if h == _INF:
                raise ValueError("prices must be finite")
            if lo > min(o, c):
                raise ValueError(f"low {lo} is above min(open, close)")
            raise ValueError(f"high {h} is below max(open, close)")


OptFloat = float | None

# The indicator fields, in message and table column order.
INDICATOR_FIELDS = (
    "rsi",
    "sma_short",
    "sma_long",
    "ema_short",
    "ema_long",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "macd",
    "macd_signal",
    "macd_hist",
    "volatility",
)


class Indicators(msgspec.Struct, frozen=True, kw_only=True):
    """Indicator values for one bar on ``indicators``; ``None`` while warming up."""

    v: Literal[1] = 1
    symbol: Symbol
    interval: Interval
    ts: Timestamp
    close: Price
    rsi: OptFloat = None
    sma_short: OptFloat = None
    sma_long: OptFloat = None
    ema_short: OptFloat = None
    ema_long: OptFloat = None
    bb_upper: OptFloat = None
    bb_middle: OptFloat = None
    bb_lower: OptFloat = None
    macd: OptFloat = None
    macd_signal: OptFloat = None
    macd_hist: OptFloat = None
    volatility: OptFloat = None

    def __post_init__(self) -> None:
        _check_names(self.symbol, self.interval)


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert on ``alerts``; ``id`` comes from :func:`alert_id` so replays dedupe."""

    v: Literal[1] = 1
    id: str
    symbol: Symbol
    interval: Interval
    ts: Timestamp
    rule: Annotated[str, Meta(min_length=1, max_length=64)]
    value: float
    threshold: float
    message: str

    def __post_init__(self) -> None:
        _check_names(self.symbol, self.interval)


class ForecastPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One forecast step: the bar start it predicts, the point forecast and its interval."""

    ts: Timestamp
    yhat: float
    lo: float | None = None
    hi: float | None = None


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    """One forecast run for one symbol on ``forecasts``."""

    v: Literal[1] = 1
    symbol: Symbol
    interval: Interval
    made_at: Timestamp
    model: Annotated[str, Meta(min_length=1, max_length=64)]
    points: list[ForecastPoint]

    def __post_init__(self) -> None:
        _check_names(self.symbol, self.interval)


_ALERT_NAMESPACE = uuid.UUID("6f1c1c52-3b53-4a4e-9a57-6a0e3c2b7d10")


def alert_id(symbol: str, interval: str, ts: datetime, rule: str) -> str:
    """Deterministic alert id: a UUIDv5 of symbol, interval, ts (UTC) and rule."""
    utc = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{symbol}|{interval}|{utc}|{rule}"))


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "wk": timedelta(weeks=1), "mo": timedelta(days=31)}


def interval_length(interval: str) -> timedelta:
    """Length of a bar interval such as ``"1m"`` or ``"1d"`` (a month counts as 31 days)."""
    digits = len(interval) - len(interval.lstrip("0123456789"))
    return int(interval[:digits]) * _UNITS[interval[digits:]]


M = TypeVar("M", bound=msgspec.Struct)

# What decoding bad bytes raises (ValidationError is a DecodeError; TypeError is a null value).
DECODE_ERRORS = (msgspec.DecodeError, TypeError)


class Codec(Generic[M]):
    """JSON codec for one message type; decoding raises :class:`InvalidMessage`."""

    __slots__ = ("type", "decoder", "_encoder")

    def __init__(self, type_: type[M]) -> None:
        self.type = type_
        # The raw msgspec decoder, for loops that catch DECODE_ERRORS themselves and call
        # invalid(): one Python call less per message than decode().
        self.decoder = msgspec.json.Decoder(type_)
        self._encoder = msgspec.json.Encoder()

    def decode(self, data: bytes | None) -> M:
        if data is None:
            raise InvalidMessage("empty", "message has no value")
        try:
            return self.decoder.decode(data)
        except DECODE_ERRORS as exc:
            raise self.invalid(exc) from None

    @staticmethod
    def invalid(exc: Exception) -> InvalidMessage:
        """The :class:`InvalidMessage` (reason + detail) for a decoding error."""
        text = str(exc)
        if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
            return InvalidMessage("malformed", text)
        if isinstance(exc, TypeError):  # a null value
            return InvalidMessage("empty", "message has no value")
        if "missing required field" in text:
            return InvalidMessage("missing_field", text)
        if text.startswith(("prices must", "low ", "high ")):
            return InvalidMessage("inconsistent", text)
        return InvalidMessage("invalid_field", text)

    def encode(self, message: M) -> bytes:
        return self._encoder.encode(message)

    def encode_into(self, message: M, buffer: bytearray) -> None:
        """Encode into a reused buffer (no allocation per message on hot paths)."""
        self._encoder.encode_into(message, buffer)
