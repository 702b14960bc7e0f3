"""Version 1 of the messages on stockpipe's topics (DESIGN.md, "Message schema").

Each message is a frozen :mod:`msgspec` Struct: decoding JSON straight into it validates
types and constraints in one pass, and encoding is as fast. Unknown fields are ignored
(forward compatible); a missing required field, ``v`` included, is invalid.

>>> codec = Codec(Bar)
>>> bar = codec.decode(raw_bytes)      # raises InvalidMessage with a reason
>>> codec.encode(bar)                  # bytes

What decoding guarantees: everything the tables can hold and the indicator state can use.

- Names match in full (``fullmatch``: ``"AAPL\\n"`` is not AAPL): symbol
  :data:`SYMBOL_PATTERN`, interval :data:`INTERVAL_PATTERN`, alert rule :data:`RULE_PATTERN`;
  an alert ``id`` is a UUID in canonical form (36 lower-case characters).
- Text has no NUL and no control characters (C0, DEL, C1; PostgreSQL ``text`` refuses NUL) and a
  bounded length (alert message :data:`MAX_TEXT`, rule and model 64); lone surrogates are
  malformed JSON already.
- Prices (bar open/high/low/close, indicators' close) lie in :data:`PRICE_RANGE`
  (1e-8 .. 1e9: a millionth of a cent up to a billion per unit, beyond any real quote;
  BRK-A is ~1e6, the smallest crypto tokens ~1e-8); ``low <= min(open, close)`` and
  ``max(open, close) <= high``. Within that range every ratio between two closes is
  within 1e-17 .. 1e17, which keeps every indicator finite (see
  :mod:`stockpipe.analytics.indicators`). Volume is an integer in 0 .. :data:`MAX_VOLUME`
  (1e15 shares or coins per bar, ~10,000x the busiest day of any market; a bigint holds it).
  Other floats are finite (JSON cannot spell NaN; ``1e999`` is out of range); RSI in
  0..100, volatility >= 0, a forecast's ``level`` in (0, 1), ``lo <= hi``.
- Times are RFC 3339 with an offset and are normalised to UTC at decode (``+01:00`` is
  valid and comes out as the same instant in UTC). A bar, indicator or alert ``ts`` is
  aligned to its interval's grid (:func:`interval_grid`: the interval itself up to 15
  minutes, a quarter hour for longer bars, whose sessions start at 09:30 New York or 09:15
  Mumbai, and whose days start at the exchange's midnight), not before 1900, and at most one
  interval plus the clock-skew tolerance ahead of the wall clock. A forecast's ``made_at``
  is at most the tolerance ahead; its points (1 .. :data:`MAX_FORECAST_POINTS`) are aligned,
  strictly increasing, and at most ``len(points)`` intervals (plus the tolerance) after
  ``made_at``: a forecast looks ahead by design, but not without bound.
- A message is at most :data:`MAX_MESSAGE_BYTES` long.

"Ahead of the wall clock" is judged twice when the reader passes the message's Kafka
timestamp (``Codec.decode(data, received_at=...)``): against now and against that time, so
that a message refused as too far ahead when it arrived is refused again when replayed
later (a state rebuild sees what the live read saw).

The clock-skew tolerance is :data:`DEFAULT_CLOCK_SKEW_TOLERANCE` seconds until
:func:`set_clock_skew_tolerance` changes it; :func:`stockpipe.common.settings.load` calls it
with the ``CLOCK_SKEW_TOLERANCE`` setting of every service, so one variable sets it.

Reasons (``InvalidMessage.reason``, the ``reason`` label of ``stockpipe_dlq_messages_total``):

- ``empty``: no value (a tombstone), or an empty required text or list;
- ``malformed``: not JSON (bad syntax, invalid UTF-8, lone surrogates, nesting too deep);
- ``too_large``: over MAX_MESSAGE_BYTES, or a text or list over its length bound;
- ``missing_field``: a required field is missing (``v`` included);
- ``invalid_field``: a wrong type or value: a name not matching its pattern, text with
  control characters, an id that is not a canonical UUID, a zero or negative price, a
  negative volume, an unknown ``v`` or source, a time without an offset;
- ``out_of_range``: a number beyond its plausible range (a price outside PRICE_RANGE, a
  volume above MAX_VOLUME or any integer beyond 64 bits, ``1e999``), a time before 1900 (or
  beyond the year 9999 once in UTC);
- ``inconsistent``: fields that contradict each other (high < low, lo > hi, forecast points
  out of order);
- ``unaligned``: a ts off its interval's grid;
- ``future``: a ts too far ahead of the wall clock (or of the message's Kafka timestamp).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from stockpipe.common.errors import InvalidMessage

__all__ = [
    "SCHEMA_VERSION",
    "SYMBOL_PATTERN",
    "INTERVAL_PATTERN",
    "RULE_PATTERN",
    "PRICE_RANGE",
    "MAX_VOLUME",
    "MAX_TEXT",
    "MAX_FORECAST_POINTS",
    "MAX_MESSAGE_BYTES",
    "MIN_TS",
    "GRID_ORIGIN",
    "DEFAULT_CLOCK_SKEW_TOLERANCE",
    "REASONS",
    "Bar",
    "Indicators",
    "Alert",
    "ForecastPoint",
    "Forecast",
    "Codec",
    "DECODE_ERRORS",
    "alert_id",
    "interval_length",
    "interval_grid",
    "set_clock_skew_tolerance",
    "clock_skew_tolerance",
    "INDICATOR_FIELDS",
]

SCHEMA_VERSION = 1
SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9.^=-]{0,14}$"
# yfinance's intervals: 1m 2m 5m 15m 30m 60m 90m 1h 1d 5d 1wk 1mo 3mo.
INTERVAL_PATTERN = r"^[1-9][0-9]{0,3}(m|h|d|wk|mo)$"
RULE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
PRICE_RANGE = (1e-8, 1e9)
MAX_VOLUME = 10**15
MAX_TEXT = 1000              # characters of an alert message: a few lines' worth
MAX_FORECAST_POINTS = 1000   # steps of one forecast run (a day of 1m bars is 390-1440)
# Far below Kafka's 1 MiB default: the largest honest message, a 1,000-point forecast, is
# ~100 KB; anything bigger is not ours, and a dead-letter copy of it still fits a produce.
MAX_MESSAGE_BYTES = 256 * 1024
MIN_TS = datetime(1900, 1, 1, tzinfo=UTC)  # older market data does not exist
DEFAULT_CLOCK_SKEW_TOLERANCE = 60.0  # seconds; NTP keeps hosts within milliseconds
REASONS = ("empty", "malformed", "too_large", "missing_field", "invalid_field", "out_of_range",
           "inconsistent", "unaligned", "future")

# Patterns as the docs show them; checked with fullmatch (``$`` alone would allow "AAPL\n").
_SYMBOL_RE = re.compile(SYMBOL_PATTERN[1:-1])
_INTERVAL_RE = re.compile(INTERVAL_PATTERN[1:-1])
_RULE_RE = re.compile(RULE_PATTERN[1:-1])
# C0 controls (NUL included), DEL, C1 controls, and surrogates (only reachable from Python:
# JSON decoding already refuses a lone surrogate).
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"

# Symbols, intervals and rules are checked in __post_init__ through a cache of names already
# seen valid: the same few thousand names repeat in every message, and a regex match per
# field was a third of the decoding time.
_valid_symbols: set[str] = set()
_valid_intervals: set[str] = set()
_valid_rules: set[str] = set()
_MAX_CACHED = 200_000  # names; a bound on memory if a feed invents symbols


def _check_names(symbol: str, interval: str) -> None:
    if symbol not in _valid_symbols:
        if not _SYMBOL_RE.fullmatch(symbol):
            raise ValueError(f"invalid_field: symbol {symbol[:40]!r} does not match {SYMBOL_PATTERN}")
        if len(_valid_symbols) >= _MAX_CACHED:
            _valid_symbols.clear()
        _valid_symbols.add(symbol)
    if interval not in _valid_intervals:
        if not _INTERVAL_RE.fullmatch(interval):
            raise ValueError(f"invalid_field: interval {interval[:40]!r} does not match {INTERVAL_PATTERN}")
        _valid_intervals.add(interval)


def _check_text(name: str, text: str) -> None:
    bad = _BAD_TEXT.search(text)
    if bad:
        raise ValueError(f"invalid_field: {name} holds control character {bad.group()!r} at {bad.start()}")


# --- time ---------------------------------------------------------------------------------

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "wk": timedelta(weeks=1), "mo": timedelta(days=31)}
_QUARTER_HOUR = 900.0
# Where grids that do not divide an hour (7m, 9m) start: Monday 2000-01-03, the synthetic
# source's origin too (every grid dividing an hour or a day is aligned there as well).
GRID_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
_GRID_ORIGIN = GRID_ORIGIN.timestamp()
_BEFORE_ALL = datetime.min.replace(tzinfo=UTC)
_tolerance = DEFAULT_CLOCK_SKEW_TOLERANCE
_clock = time.time  # the wall clock (a module global so a test can move it)


class _TimeRule:
    """The time checks of one interval, precomputed (decoding runs them for every message).

    ``limit`` is a ts the future check has already cleared: the wall clock only moves on, so
    a ts at or below it passes with one comparison and no clock read; a ts beyond it reads the
    clock, moves ``limit`` up and is judged against the fresh limit.
    """

    __slots__ = ("ahead", "epoch", "fast_limit", "grid", "last_ok", "length", "limit", "minutes", "seen")

    def __init__(self, interval: str) -> None:
        self.length = interval_length(interval).total_seconds()
        self.grid = min(self.length, _QUARTER_HOUR)
        step = int(self.grid // 60)
        # On a grid of whole minutes dividing an hour, alignment is minute % step == 0 (and no
        # seconds): three attribute reads instead of a timestamp. Otherwise (7m): count from
        # GRID_ORIGIN.
        self.epoch = not 60 % step == 0
        self.minutes = 1 if self.epoch else step
        self.ahead = self.length + _tolerance
        self.limit = MIN_TS
        # What the inline check in Bar and Indicators compares with: the limit on a minutes
        # grid; on an epoch grid a time before MIN_TS, so that every ts takes the full check.
        self.fast_limit = MIN_TS if not self.epoch else _BEFORE_ALL
        self.last_ok = _BEFORE_ALL  # the last ts that passed every check (UTC)
        # The last ts whose POSIX time was needed, and that time: the symbols of a feed share each
        # bar's ts, so _check_ahead_of computes it once per ts rather than once per message.
        # One tuple: swapped whole, it is never half-updated for another thread.
        self.seen = (_BEFORE_ALL, _BEFORE_ALL.timestamp())

    def off_grid(self, ts: datetime) -> bool:
        if ts.second or ts.microsecond:
            return True
        if self.epoch:
            return bool((ts.timestamp() - _GRID_ORIGIN) % self.grid)
        return bool(ts.minute % self.minutes)

    def too_far_ahead(self, ts: datetime) -> bool:
        now = _clock()
        try:
            self.limit = max(self.limit, datetime.fromtimestamp(now + self.ahead, UTC))
        except (OverflowError, ValueError, OSError):  # a clock beyond year 9999: nothing is ahead
            return False
        if not self.epoch:
            self.fast_limit = self.limit
        return ts > self.limit


_time_rules: dict[str, _TimeRule] = {}


def interval_length(interval: str) -> timedelta:
    """Length of a bar interval such as ``"1m"`` or ``"1d"`` (a month counts as 31 days)."""
    digits = len(interval) - len(interval.lstrip("0123456789"))
    return int(interval[:digits]) * _UNITS[interval[digits:]]


def interval_grid(interval: str) -> float:
    """Seconds a ``ts`` of this interval is a multiple of, counted from :data:`GRID_ORIGIN`.

    The interval itself up to 15 minutes (1m, 5m, 15m bars start on their own grid in every
    market); a quarter hour for longer bars: hourly bars start with the session (09:30 New
    York is 14:30Z, 09:15 Mumbai 03:45Z) and daily bars at the exchange's midnight, which is
    a quarter hour in every time zone.
    """
    return min(interval_length(interval).total_seconds(), _QUARTER_HOUR)


def set_clock_skew_tolerance(seconds: float) -> None:
    """How far (seconds) a ts may be ahead of the wall clock beyond what its kind allows."""
    global _tolerance
    if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and 0 <= seconds < math.inf):
        raise ValueError(f"clock skew tolerance must be a finite number >= 0, got {seconds!r}")
    _tolerance = float(seconds)
    _time_rules.clear()


def clock_skew_tolerance() -> float:
    """The clock-skew tolerance in seconds now in force."""
    return _tolerance


def _time_rule(interval: str) -> _TimeRule:
    rule = _time_rules[interval] = _TimeRule(interval)
    return rule


def _iso(ts: datetime | float) -> str:
    if isinstance(ts, datetime):
        return ts.isoformat().replace("+00:00", "Z")
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return repr(ts)


def _to_utc(obj: msgspec.Struct, name: str, ts: datetime) -> datetime:
    """``ts`` in UTC (stored back into ``obj.name``); ValueError for a naive or unrepresentable one."""
    if ts.tzinfo is None:  # only from Python: decoding refuses a time without an offset
        raise ValueError(f"invalid_field: {name} {ts.isoformat()} has no UTC offset")
    try:
        ts = ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"out_of_range: {name} {ts.isoformat()} is outside years 1..9999 in UTC") from None
    force_setattr(obj, name, ts)
    return ts


def _check_bar_time(obj: msgspec.Struct, ts: datetime, interval: str) -> None:
    """UTC, on the interval's grid, not before 1900, at most one interval plus the tolerance ahead.

    Bar and Indicators inline the passing case (no call at all): keep them in step.
    """
    if ts.tzinfo is not UTC:
        ts = _to_utc(obj, "ts", ts)
    rule = _time_rules.get(interval) or _time_rule(interval)
    if rule.off_grid(ts):
        raise ValueError(f"unaligned: ts {_iso(ts)} is not on the {interval} grid ({rule.grid:g} s)")
    if ts > rule.limit and rule.too_far_ahead(ts):
        raise ValueError(f"future: ts {_iso(ts)} is more than {interval} + {_tolerance:g} s ahead of the clock")
    if ts < MIN_TS:
        raise ValueError(f"out_of_range: ts {_iso(ts)} is before 1900")
    rule.last_ok = ts


# --- the messages ---------------------------------------------------------------------------

Symbol = str     # checked by _check_names (fullmatch; a bounded pattern rejects a long one fast)
Interval = str
Price = Annotated[float, Meta(gt=0)]  # and within PRICE_RANGE, checked in __post_init__
Volume = Annotated[int, Meta(ge=0, le=MAX_VOLUME)]
Source = Literal["yfinance", "synthetic", "replay"]
# RFC 3339 needs an offset: a naive time is rejected while decoding (checked in C).
Timestamp = Annotated[datetime, Meta(tz=True)]
_PMIN, _PMAX = PRICE_RANGE


def _price_error(**prices: float) -> ValueError:
    for name, x in prices.items():
        if not _PMIN <= x <= _PMAX:  # NaN too
            return ValueError(f"out_of_range: {name} {x!r} is outside {_PMIN:g}..{_PMAX:g}")
    return ValueError(f"out_of_range: a price is outside {_PMIN:g}..{_PMAX:g}")  # callers saw one: not reached


class Bar(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One final OHLCV bar on ``raw``; ``ts`` is the bar's start, ``volume`` in shares."""

    v: Literal[1] = 1
    symbol: Symbol
    ts: Timestamp
    interval: Interval
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume
    source: Source

    def __post_init__(self) -> None:
        # One chained comparison on the hot path (decoding runs it for every bar): it bounds
        # all four prices by PRICE_RANGE and orders them (fails on NaN too).
        if self.symbol not in _valid_symbols or self.interval not in _valid_intervals:
            _check_names(self.symbol, self.interval)
        o, h, lo, c = self.open, self.high, self.low, self.close
        if not (_PMIN <= lo <= o <= h <= _PMAX and lo <= c <= h):
            if not (_PMIN <= lo <= _PMAX and _PMIN <= h <= _PMAX and _PMIN <= o <= _PMAX and _PMIN <= c <= _PMAX):
                raise _price_error(open=o, high=h, low=lo, close=c)
            if lo > min(o, c):
                raise ValueError(f"inconsistent: low {lo} is above min(open, close)")
            raise ValueError(f"inconsistent: high {h} is below max(open, close)")
        # _check_bar_time's passing cases, inline: the ts of the last bar that passed (a live
        # feed's symbols share each minute's ts), else UTC, on a grid of whole minutes dividing
        # an hour (no seconds, minute % step == 0), at or below a limit already cleared.
        ts = self.ts
        rule = _time_rules.get(self.interval)
        if rule is None or ts.tzinfo is not UTC or ts != rule.last_ok:
            if (rule is None or ts.tzinfo is not UTC or not MIN_TS <= ts <= rule.fast_limit
                    or ts.second or ts.microsecond or ts.minute % rule.minutes):
                _check_bar_time(self, ts, self.interval)
            else:
                rule.last_ok = ts


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


class Indicators(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Indicator values for one bar on ``indicators``; ``None`` while warming up."""

    v: Literal[1] = 1
    symbol: Symbol
    interval: Interval
    ts: Timestamp
    close: Price
    rsi: Annotated[float, Meta(ge=0, le=100)] | None = None
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
    volatility: Annotated[float, Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        if self.symbol not in _valid_symbols or self.interval not in _valid_intervals:
            _check_names(self.symbol, self.interval)
        if not _PMIN <= self.close <= _PMAX:
            raise _price_error(close=self.close)
        ts = self.ts  # as in Bar: _check_bar_time's passing case inline
        rule = _time_rules.get(self.interval)
        if rule is None or ts.tzinfo is not UTC or ts != rule.last_ok:
            if (rule is None or ts.tzinfo is not UTC or not MIN_TS <= ts <= rule.fast_limit
                    or ts.second or ts.microsecond or ts.minute % rule.minutes):
                _check_bar_time(self, ts, self.interval)
            else:
                rule.last_ok = ts


def _not_finite(name: str, x: float) -> ValueError:
    return ValueError(f"out_of_range: {name} {x!r} is not finite")


_INF = math.inf  # JSON cannot spell a non-finite float: only Python-built messages need the checks


class Alert(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One alert on ``alerts``; ``id`` comes from :func:`alert_id` so replays dedupe."""

    v: Literal[1] = 1
    id: Annotated[str, Meta(pattern=_UUID)]
    symbol: Symbol
    interval: Interval
    ts: Timestamp
    rule: Annotated[str, Meta(min_length=1, max_length=64)]
    value: float
    threshold: float
    message: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]

    def __post_init__(self) -> None:
        _check_names(self.symbol, self.interval)
        if self.rule not in _valid_rules:
            if not _RULE_RE.fullmatch(self.rule):
                raise ValueError(f"invalid_field: rule {self.rule!r} does not match {RULE_PATTERN}")
            if len(_valid_rules) < _MAX_CACHED:
                _valid_rules.add(self.rule)
        if _BAD_TEXT.search(self.message):
            _check_text("message", self.message)
        if not -_INF < self.value < _INF:
            raise _not_finite("value", self.value)
        if not -_INF < self.threshold < _INF:
            raise _not_finite("threshold", self.threshold)
        _check_bar_time(self, self.ts, self.interval)


class ForecastPoint(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One forecast step: the bar start it predicts, the point forecast and its interval."""

    ts: Timestamp
    yhat: float
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        ts = self.ts if self.ts.tzinfo is UTC else _to_utc(self, "ts", self.ts)
        if ts < MIN_TS:
            raise ValueError(f"out_of_range: ts {_iso(ts)} is before 1900")
        lo, hi = self.lo, self.hi
        if not -_INF < self.yhat < _INF:
            raise _not_finite("yhat", self.yhat)
        if lo is not None and not -_INF < lo < _INF:
            raise _not_finite("lo", lo)
        if hi is not None and not -_INF < hi < _INF:
            raise _not_finite("hi", hi)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"inconsistent: lo {lo} is above hi {hi}")


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    """One forecast run for one symbol on ``forecasts``; ``level`` of the lo..hi interval."""

    v: Literal[1] = 1
    symbol: Symbol
    interval: Interval
    made_at: Timestamp
    model: Annotated[str, Meta(min_length=1, max_length=64)]
    level: Annotated[float, Meta(gt=0, lt=1)] | None = None
    points: Annotated[list[ForecastPoint], Meta(min_length=1, max_length=MAX_FORECAST_POINTS)]

    def __post_init__(self) -> None:
        _check_names(self.symbol, self.interval)
        _check_text("model", self.model)
        made_at = self.made_at if self.made_at.tzinfo is UTC else _to_utc(self, "made_at", self.made_at)
        if made_at < MIN_TS:
            raise ValueError(f"out_of_range: made_at {_iso(made_at)} is before 1900")
        made = made_at.timestamp()
        if made - _clock() > _tolerance:
            raise ValueError(f"future: made_at {_iso(made)} is more than {_tolerance:g} s ahead of the clock")
        rule = _time_rules.get(self.interval) or _time_rule(self.interval)
        last = made + len(self.points) * rule.length + _tolerance
        prev = -math.inf
        grid = rule.grid
        for i, p in enumerate(self.points):
            t = p.ts.timestamp()  # UTC already: ForecastPoint normalised it
            if (t - _GRID_ORIGIN) % grid:
                raise ValueError(f"unaligned: points[{i}].ts {_iso(t)} is not on the {self.interval} grid")
            if t <= prev:
                raise ValueError(f"inconsistent: points[{i}].ts {_iso(t)} does not follow the previous point")
            if t > last:
                raise ValueError(f"future: points[{i}].ts {_iso(t)} is more than {len(self.points)} "
                                 f"x {self.interval} after made_at")
            prev = t


_ALERT_NAMESPACE = uuid.UUID("6f1c1c52-3b53-4a4e-9a57-6a0e3c2b7d10")


_ALERT_NAMESPACE_BYTES = _ALERT_NAMESPACE.bytes


_last_alert_ts: tuple = (None, "")  # the last ts alert_id formatted, and its text


def alert_id(symbol: str, interval: str, ts: datetime, rule: str) -> str:
    """Deterministic alert id: a UUIDv5 of symbol, interval, ts (UTC) and rule.

    ``str(uuid.uuid5(namespace, name))`` spelled out (SHA-1, version and variant bits, the
    8-4-4-4-12 form): the same string in a third of the time (tests/unit/common).
    """
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    global _last_alert_ts
    last, utc = _last_alert_ts
    if ts != last:  # a batch's alerts mostly share their bars' ts
        # isoformat's first 19 characters are strftime("%Y-%m-%dT%H:%M:%S") for years >= 1000, faster
        utc = ts.isoformat()[:19] + "Z" if ts.year >= 1000 else ts.strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_alert_ts = (ts, utc)
    h = bytearray(hashlib.sha1(_ALERT_NAMESPACE_BYTES + f"{symbol}|{interval}|{utc}|{rule}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


# --- the codec ---------------------------------------------------------------------------------

M = TypeVar("M", bound=msgspec.Struct)

# What decoding bad bytes raises: ValidationError is a DecodeError; TypeError is a null value;
# msgspec lets two more through: RecursionError for JSON nested too deep (even inside an
# ignored field) and UnicodeDecodeError for invalid UTF-8 in a string (both found by the
# hostile corpus; either used to stop a consumer).
DECODE_ERRORS = (msgspec.DecodeError, TypeError, RecursionError, UnicodeDecodeError)

_VERSION_PREFIX = b'{"v":1'


class _Version(msgspec.Struct):
    v: int


_OUT_OF_RANGE = re.compile(r"Number out of range|Expected `(int|float)` <=")


class _Decoder:
    """msgspec's decoder plus the checks a Struct cannot express; raises DECODE_ERRORS.

    ``v`` is required on the wire, yet has a default so Python code builds messages without
    it: a message our encoder wrote starts with ``{"v":1`` (one bytes comparison); any other
    must show a ``v`` to a second, field-skipping decode.
    """

    __slots__ = ("_decode", "_version")

    def __init__(self, type_: type) -> None:
        self._decode = msgspec.json.Decoder(type_).decode
        self._version = msgspec.json.Decoder(_Version).decode

    def decode(self, data: bytes, received_at: float | None = None):
        if len(data) > MAX_MESSAGE_BYTES:
            raise msgspec.ValidationError(f"too_large: {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
        message = self._decode(data)
        if not data.startswith(_VERSION_PREFIX):
            self._version(data)  # raises "Object missing required field `v`"
        if received_at is not None:
            _check_ahead_of(message, received_at)
        return message

    def decode_all(self, values: list[bytes], earliest_received_at: float | None = None) -> list | None:
        """Every value decoded as :meth:`decode` would, in C-level passes; None when any may fail.

        For a batch of valid messages (the usual case) this is ``[decode(v, r) for v in
        values]`` without a Python frame per message but ``__post_init__``'s. None means "take
        them one by one" (:meth:`decode` then names each invalid one's reason): a value that
        fails any check, or one that might fail the Kafka-time check. That check is done for
        the whole batch at once against ``earliest_received_at``, the earliest Kafka
        timestamp among the values' messages in seconds: if the latest time in the batch is
        not too far ahead of it, no message's time is too far ahead of its own timestamp.
        """
        if not values:
            return []
        try:
            if max(map(len, values)) > MAX_MESSAGE_BYTES or not all(
                    map(bytes.startswith, values, repeat(_VERSION_PREFIX))):
                return None  # too large, or without a leading "v": decode() says why
            messages = list(map(self._decode, values))
        except DECODE_ERRORS:  # TypeError from a None value too
            return None
        if earliest_received_at is not None and not _all_within_ahead(messages, earliest_received_at):
            return None
        return messages


_TS = attrgetter("ts")
_MADE_AT = attrgetter("made_at")
_INTERVAL = attrgetter("interval")


def _all_within_ahead(messages: list[msgspec.Struct], earliest_received_at: float) -> bool:
    """Whether :func:`_check_ahead_of` passes every message whose Kafka time is >= ``earliest_received_at``.

    Sufficient, not necessary: the latest time of the batch against the earliest Kafka
    time and the smallest allowance of its intervals. Messages come from one decoder, so one type.
    """
    if isinstance(messages[0], Forecast):
        return max(map(_MADE_AT, messages)).timestamp() - earliest_received_at <= _tolerance
    ahead = min((_time_rules.get(i) or _time_rule(i)).ahead for i in set(map(_INTERVAL, messages)))
    return max(map(_TS, messages)).timestamp() - earliest_received_at <= ahead


def _check_ahead_of(message: msgspec.Struct, received_at: float) -> None:
    """The future check again, against the time the message reached Kafka instead of now.

    Decoding checks times against the wall clock, so a bar rejected as "future" when it
    arrived would pass when replayed later (a state rebuild): with the message's Kafka
    timestamp as ``received_at`` the verdict is the same on every read. Stricter than the
    wall-clock check whenever ``received_at`` is in the past, so both together judge by the
    earlier of the two.
    """
    if isinstance(message, Forecast):
        made = message.made_at.timestamp()
        if made - received_at > _tolerance:
            raise msgspec.ValidationError(f"future: made_at {_iso(made)} is more than {_tolerance:g} s ahead "
                                          f"of the message's time {_iso(received_at)}")
        return
    rule = _time_rules.get(message.interval) or _time_rule(message.interval)
    ts = message.ts
    seen, t = rule.seen
    if ts != seen:
        t = ts.timestamp()
        rule.seen = (ts, t)
    if t - received_at > rule.ahead:
        raise msgspec.ValidationError(f"future: ts {_iso(t)} is more than {message.interval} + {_tolerance:g} s "
                                      f"ahead of the message's time {_iso(received_at)}")


class Codec(Generic[M]):
    """JSON codec for one message type; decoding raises :class:`InvalidMessage`."""

    __slots__ = ("type", "decoder", "_encoder")

    def __init__(self, type_: type[M]) -> None:
        self.type = type_
        # The decoder, for loops that catch DECODE_ERRORS themselves and call invalid().
        self.decoder = _Decoder(type_)
        self._encoder = msgspec.json.Encoder()

    def decode(self, data: bytes | None, received_at: float | None = None) -> M:
        """The message in ``data``, or :class:`InvalidMessage` with its reason.

        ``received_at``: the message's Kafka timestamp in seconds since the epoch
        (``msg.timestamp()[1] / 1000``). Given, the future check also holds the message's
        times against it, so that a replay (state rebuild) judges each message as its first
        read did; a consumer should pass it on every read.
        """
        if data is None:
            raise InvalidMessage("empty", "message has no value")
        # decoder.decode's steps, inline: one Python call less per message.
        dec = self.decoder
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                raise msgspec.ValidationError(f"too_large: {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
            message = dec._decode(data)
            if not data.startswith(_VERSION_PREFIX):
                dec._version(data)
            if received_at is not None:
                _check_ahead_of(message, received_at)
            return message
        except DECODE_ERRORS as exc:
            raise self.invalid(exc) from None

    @staticmethod
    def invalid(exc: BaseException) -> InvalidMessage:
        """The :class:`InvalidMessage` (reason + detail) for a decoding error."""
        if isinstance(exc, RecursionError):
            return InvalidMessage("malformed", "JSON nested too deep")
        if isinstance(exc, UnicodeDecodeError):
            return InvalidMessage("malformed", f"invalid UTF-8: {exc.reason} at byte {exc.start}")
        if isinstance(exc, TypeError):  # a null value
            return InvalidMessage("empty", "message has no value")
        text = str(exc)
        if not isinstance(exc, msgspec.ValidationError):
            return InvalidMessage("malformed", text)
        reason, sep, detail = text.partition(": ")
        if sep and reason in REASONS:  # raised by our own checks
            return InvalidMessage(reason, detail)
        if "missing required field" in text:
            return InvalidMessage("missing_field", text)
        if _OUT_OF_RANGE.match(text):
            return InvalidMessage("out_of_range", text)
        if "of length <=" in text:
            return InvalidMessage("too_large", text)
        if "of length >= 1" in text:
            return InvalidMessage("empty", text)
        return InvalidMessage("invalid_field", text)

    def encode(self, message: M) -> bytes:
        return self._encoder.encode(message)
