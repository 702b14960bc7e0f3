"""Fuzzing every decoder: whatever the bytes, decoding returns a valid message or raises InvalidMessage.

Layers of input: arbitrary bytes; arbitrary JSON values; valid messages with fields replaced
by arbitrary JSON values (which gets past the parser into every check); valid messages with
raw bytes spliced in (invalid UTF-8 inside a string: json.dumps never writes it). Whatever
decodes must hold every guarantee of messages.py and survive a round trip. Sized for CI
(the file runs in a few seconds; CI's profile is derandomised, tests/conftest.py).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import (
    DECODE_ERRORS,
    GRID_ORIGIN,
    MAX_VOLUME,
    PRICE_RANGE,
    REASONS,
    Alert,
    Bar,
    Codec,
    Forecast,
    Indicators,
    alert_id,
    interval_grid,
)

CODECS = [Codec(Bar), Codec(Indicators), Codec(Alert), Codec(Forecast)]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
BASES = {
    Bar: {"v": 1, "symbol": "AAPL", "ts": "2024-01-02T14:30:00Z", "interval": "1m", "open": 10.0, "high": 12.0,
          "low": 9.5, "close": 11.0, "volume": 1200, "source": "synthetic"},
    Indicators: {"v": 1, "symbol": "AAPL", "interval": "1m", "ts": "2024-01-02T14:30:00Z", "close": 11.0,
                 "rsi": 55.0, "macd": -0.1, "volatility": 0.01},
    Alert: {"v": 1, "id": alert_id("AAPL", "1m", T, "rsi_overbought"), "symbol": "AAPL", "interval": "1m",
            "ts": "2024-01-02T14:30:00Z", "rule": "rsi_overbought", "value": 71.0, "threshold": 70.0,
            "message": "AAPL RSI 71.0 crossed above 70"},
    Forecast: {"v": 1, "symbol": "AAPL", "interval": "1m", "made_at": "2024-01-02T14:30:10Z", "model": "naive",
               "level": 0.9, "points": [{"ts": "2024-01-02T14:31:00Z", "yhat": 11.0, "lo": 10.0, "hi": 12.0}]},
}

# Values that sit on the edges the checks care about, mixed into hypothesis' own.
EDGE_TEXT = st.sampled_from(["", "AAPL\n", "A\u0000", "\u0085", "\ud800", "1m", "1mo", "9999wk", "0m", "EURUSD=X",
                             "2024-01-02T14:30:00+01:00", "2024-01-02T14:30:30Z", "2099-01-01T00:00:00Z",
                             "1899-12-31T23:45:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-01:00",
                             "2024-01-02T14:30:00", "NaN", "synthetic", "replay"])
EDGE_NUMBERS = st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**15, 10**15 + 1, 10**400,
                                0.0, -0.0, 1e-8, 0.99e-8, 1e9, 1.0000001e9, 5e-324, 1e308, math.inf, -math.inf,
                                math.nan, 100.0, 100.5])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), EDGE_TEXT,
                    EDGE_NUMBERS)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)


def _dumps(value: object) -> bytes:
    # json.dumps writes NaN/Infinity literals and lone surrogates as escapes: both are hostile input too.
    return json.dumps(value).encode()


def _decode(codec: Codec, data: bytes | None):
    """Codec.decode, asserting the contract: a message or InvalidMessage with a known reason."""
    try:
        message = codec.decode(data)
    except InvalidMessage as exc:
        assert exc.reason in REASONS and exc.detail
        # The loop path (decoder + DECODE_ERRORS + invalid) must agree with decode().
        if data is not None:
            with pytest.raises(DECODE_ERRORS) as raw:
                codec.decoder.decode(data)
            assert codec.invalid(raw.value).reason == exc.reason
        return None
    _assert_guarantees(message)
    assert codec.decode(codec.encode(message)) == message
    return message


def _texts_ok(*texts: str) -> bool:
    return all(not any(ord(ch) < 32 or 127 <= ord(ch) < 160 or 0xD800 <= ord(ch) < 0xE000 for ch in t)
               for t in texts)


def _assert_guarantees(m) -> None:
    """What every decoded message promises the tables and the indicator state."""
    lo, hi = PRICE_RANGE
    assert m.v == 1 and _texts_ok(m.symbol, m.interval)
    if isinstance(m, Forecast):
        times = [m.made_at, *(p.ts for p in m.points)]
        assert 1 <= len(m.points) <= 1000 and _texts_ok(m.model)
        assert all(math.isfinite(x) for p in m.points for x in (p.yhat, p.lo, p.hi) if x is not None)
    else:
        times = [m.ts]
    assert all(t.tzinfo is UTC and t.year >= 1900 for t in times)
    if isinstance(m, Bar):
        assert lo <= m.low <= min(m.open, m.close) <= max(m.open, m.close) <= m.high <= hi
        assert 0 <= m.volume <= MAX_VOLUME
    if isinstance(m, Indicators):
        assert lo <= m.close <= hi
    if isinstance(m, Alert):
        assert _texts_ok(m.message, m.rule) and len(m.id) == 36 and math.isfinite(m.value)


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    for codec in CODECS:
        _decode(codec, data)


@FUZZ
@given(value=JSONISH)
def test_arbitrary_json(value: object) -> None:
    data = _dumps(value)
    for codec in CODECS:
        _decode(codec, data)


@FUZZ
@given(kind=st.sampled_from(list(BASES)), changes=st.dictionaries(
    st.sampled_from(sorted({f for base in BASES.values() for f in base} | {"x"})),
    st.one_of(JSONISH, st.just(None)), min_size=1, max_size=3), drop=st.lists(st.sampled_from(["v", "ts", "symbol"]),
                                                                            max_size=1))
def test_valid_messages_with_fields_replaced(kind: type, changes: dict, drop: list[str]) -> None:
    msg = dict(BASES[kind]) | changes
    for field in drop:
        msg.pop(field, None)
    message = _decode(Codec(kind), _dumps(msg))
    if message is not None and "v" in drop:
        raise AssertionError("a message without v was accepted")


@FUZZ
@given(minutes=st.integers(-10**6, 10**6), seconds=st.integers(0, 59), offset=st.integers(-23 * 60, 23 * 60),
       interval=st.sampled_from(["1m", "2m", "5m", "7m", "15m", "30m", "60m", "90m", "1h", "4h", "1d", "5d", "1wk",
                                 "1mo"]))
def test_times_normalise_align_and_bound(minutes: int, seconds: int, offset: int, interval: str) -> None:
    # Any instant, written with any offset: accepted exactly when on the grid and not in the future.
    ts = (T + timedelta(minutes=minutes, seconds=seconds)).astimezone(UTC)
    written = ts.astimezone(timezone(timedelta(minutes=offset))).isoformat()
    bar = dict(BASES[Bar], ts=written, interval=interval)
    message = _decode(Codec(Bar), _dumps(bar))
    on_grid = (ts - GRID_ORIGIN).total_seconds() % interval_grid(interval) == 0
    assert (message is not None) == on_grid  # T +/- 2 years: never in the future, never before 1900
    if message is not None:
        assert message.ts == ts and message.ts.tzinfo is UTC


@FUZZ
@given(kind=st.sampled_from(list(BASES)), at=st.floats(0, 1), junk=st.binary(min_size=1, max_size=4),
       overwrite=st.booleans())
def test_valid_messages_with_bytes_spliced_in(kind: type, at: float, junk: bytes, overwrite: bool) -> None:
    # Raw bytes inside the JSON text (json.dumps never writes them): invalid UTF-8 in a string,
    # a broken number, a cut token.
    data = json.dumps(BASES[kind]).encode()
    i = int(at * len(data))
    _decode(Codec(kind), data[:i] + junk + data[i + (len(junk) if overwrite else 0):])
