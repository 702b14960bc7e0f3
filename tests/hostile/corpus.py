"""A hostile corpus: messages for every topic a service reads, each with the verdict it must get.

Importable test data (``tests/`` is on ``sys.path`` through ``tests/conftest.py``)::

    from hostile.corpus import cases, TOPIC_KINDS
    for case in cases("raw"):            # or cases() for all four topic kinds
        producer.produce(topic, case.value, case.key)
        # case.valid: must reach its table (and analytics); else dead-lettered with case.reason

Every :class:`Case` has ``topic_kind`` (``raw``, ``indicators``, ``alerts``, ``forecasts``),
a unique ``name``, a ``category`` (:data:`CATEGORIES`), the bytes (``value``; ``None`` is a
tombstone) and ``key`` to produce, ``valid`` and, for an invalid one, the ``reason`` of the
:class:`~stockpipe.common.errors.InvalidMessage` it must get (the ``reason`` label of
``stockpipe_dlq_messages_total``). ``normalised`` marks valid messages whose times carry a
non-UTC offset: they decode to the same instants in UTC.

Times are made relative to ``now`` (default: the wall clock when :func:`cases` is called),
so the valid cases stay valid for about an hour: bars a few minutes old, forecasts from
now on. Every valid message has its own (symbol, interval, ts), so none is a duplicate of
another. Two cases are bigger than Kafka's default ``max.message.bytes`` (1 MiB): see
:func:`fits_kafka`; a broker with default settings refuses them at produce time, which is
the first line of defence, so an end-to-end test skips them (and checks the decoder's own
limit with the ~1,000,000-byte case instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from stockpipe.common.messages import MAX_MESSAGE_BYTES, PRICE_RANGE, alert_id

__all__ = ["CATEGORIES", "TOPIC_KINDS", "Case", "cases", "fits_kafka", "KAFKA_MAX_MESSAGE_BYTES"]

TOPIC_KINDS = ("raw", "indicators", "alerts", "forecasts")
CATEGORIES = (
    "valid",
    "malformed_json",
    "wrong_type",
    "missing_field",
    "extra_field",
    "v_missing",
    "nan_infinity",
    "zero_negative",
    "extreme_magnitude",
    "extreme_ratio",
    "inconsistent",
    "int_beyond_64bit",
    "control_chars",
    "invalid_utf8",
    "injection",
    "ts_far_past",
    "ts_future",
    "ts_unaligned",
    "non_utc_offset",
    "size",
    "bad_id",
)
KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # the broker's default max.message.bytes
SYMBOL = "ZZHOSTILE"  # valid, and no real ticker


@dataclass(frozen=True)
class Case:
    topic_kind: str
    name: str
    category: str
    value: bytes | None
    key: bytes | None
    valid: bool
    reason: str | None
    normalised: bool = False

    def __post_init__(self) -> None:
        assert self.topic_kind in TOPIC_KINDS and self.category in CATEGORIES, self
        assert self.valid == (self.reason is None), self


def fits_kafka(case: Case) -> bool:
    """Whether a broker with default settings takes this value (with room for the record's overhead)."""
    return case.value is None or len(case.value) + len(case.key or b"") + 1024 < KAFKA_MAX_MESSAGE_BYTES


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class _Builder:
    """Collects the cases of one topic kind around one valid base message."""

    def __init__(self, kind: str, base: dict, key: str) -> None:
        self.kind, self.base, self.key = kind, base, key.encode()
        self.out: list[Case] = []

    def raw(self, name: str, category: str, value: bytes | None, reason: str | None, key: bytes | None = None,
            normalised: bool = False) -> None:
        self.out.append(Case(self.kind, f"{self.kind}/{name}", category, value,
                             self.key if key is None else key, reason is None, reason, normalised))

    def edit(self, name: str, category: str, reason: str | None, normalised: bool = False,
             base: dict | None = None, **changes: Any) -> None:
        """The base message with fields changed (``...=DROP`` removes one)."""
        msg = dict(self.base if base is None else base)
        for field, value in changes.items():
            if value is DROP:
                msg.pop(field, None)
            else:
                msg[field] = value
        self.raw(name, category, _dump(msg), reason, normalised=normalised)

    def text(self, name: str, category: str, reason: str | None, old: bytes, new: bytes,
             base: dict | None = None) -> None:
        """The base message's bytes with one substring replaced (for what json.dumps cannot write)."""
        data = _dump(self.base if base is None else base)
        assert old in data, (name, old)
        self.raw(name, category, data.replace(old, new, 1), reason)


DROP = object()


def _common(b: _Builder, ts_field: str, price_field: str | None) -> None:
    """Invalid cases every topic kind shares: syntax, types, v, names, times, sizes."""
    data = _dump(b.base)
    b.raw("not-json", "malformed_json", b"{not json", "malformed")
    b.raw("empty-bytes", "malformed_json", b"", "malformed")
    b.raw("truncated", "malformed_json", data[:-7], "malformed")
    b.raw("tombstone", "malformed_json", None, "empty")
    b.raw("json-null", "wrong_type", b"null", "invalid_field")
    b.raw("json-array", "wrong_type", b"[1,2,3]", "invalid_field")
    b.raw("json-string", "wrong_type", b'"AAPL"', "invalid_field")
    b.raw("nan-literal", "nan_infinity", data.replace(b'"v":1', b'"v":1,"x":NaN', 1), "malformed")
    b.raw("infinity-literal", "nan_infinity", data.replace(b'"v":1', b'"v":1,"x":-Infinity', 1), "malformed")
    b.raw("deep-nesting", "malformed_json", data[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
          "malformed")
    b.raw("invalid-utf8", "invalid_utf8", data.replace(SYMBOL.encode(), b"ZZ\xff\xfe", 1), "malformed")
    b.raw("overlong-utf8", "invalid_utf8", data.replace(SYMBOL.encode(), b"ZZ\xc0\xaf", 1), "malformed")
    b.text("lone-surrogate", "invalid_utf8", "malformed", SYMBOL.encode(), b"ZZ\\ud800")
    b.edit("v-missing", "v_missing", "missing_field", v=DROP)
    b.raw("v-missing-reordered", "v_missing",
          _dump({key: val for key, val in reversed(list(b.base.items())) if key != "v"}), "missing_field")
    b.edit("v-2", "wrong_type", "invalid_field", v=2)
    b.edit("v-string", "wrong_type", "invalid_field", v="1")
    b.edit("symbol-missing", "missing_field", "missing_field", symbol=DROP)
    b.edit("symbol-number", "wrong_type", "invalid_field", symbol=123)
    b.edit("symbol-lowercase", "wrong_type", "invalid_field", symbol="zzhostile")
    b.edit("symbol-newline", "control_chars", "invalid_field", symbol=SYMBOL + "\n")
    b.edit("symbol-nul", "control_chars", "invalid_field", symbol="ZZ\u0000HOSTILE")
    b.edit("symbol-tab", "control_chars", "invalid_field", symbol="ZZ\tH")
    b.edit("symbol-sql", "injection", "invalid_field", symbol="'; DROP TABLE price_bars;--")
    b.edit("symbol-html", "injection", "invalid_field", symbol="<script>alert(1)</script>")
    b.edit("symbol-too-long", "injection", "invalid_field", symbol="Z" * 16)
    b.edit("symbol-huge", "injection", "invalid_field", symbol="Z" * 100_000)
    b.edit("interval-newline", "control_chars", "invalid_field", interval="1m\n")
    b.edit("interval-unknown", "wrong_type", "invalid_field", interval="1s")
    b.edit("ts-naive", "wrong_type", "invalid_field", **{ts_field: "2024-01-02T14:30:00"})
    b.edit("ts-words", "wrong_type", "invalid_field", **{ts_field: "yesterday"})
    b.edit("ts-number", "wrong_type", "invalid_field", **{ts_field: 1704205800})
    b.edit("ts-bad-offset", "wrong_type", "invalid_field", **{ts_field: "2024-01-02T14:30:00+24:00"})
    b.edit("ts-1800", "ts_far_past", "out_of_range", **{ts_field: "1800-01-01T00:00:00Z"})
    b.edit("ts-year-1-offset", "ts_far_past", "out_of_range", **{ts_field: "0001-01-01T00:00:00+01:00"})
    b.edit("ts-year-9999-offset", "ts_future", "out_of_range", **{ts_field: "9999-12-31T23:59:00-01:00"})
    b.edit("ts-2099", "ts_future", "future", **{ts_field: "2099-01-01T00:00:00Z"})
    if price_field:
        b.text("price-1e999", "nan_infinity", "out_of_range", f'"{price_field}":'.encode(),
               f'"{price_field}":1e999,"_":'.encode())
        b.edit("price-nan-string", "nan_infinity", "invalid_field", **{price_field: "NaN"})
        b.edit("price-infinity-string", "nan_infinity", "invalid_field", **{price_field: "Infinity"})
        b.edit("price-string", "wrong_type", "invalid_field", **{price_field: "10.0"})
        b.edit("price-null", "wrong_type", "invalid_field", **{price_field: None})
        b.edit("price-bool", "wrong_type", "invalid_field", **{price_field: True})
        b.edit("price-zero", "zero_negative", "invalid_field", **{price_field: 0})
        b.edit("price-negative", "zero_negative", "invalid_field", **{price_field: -1.5})
    # Sizes: the decoder's limit, ~1 MB (fits a default broker), beyond what a broker takes.
    head = len(data) + len(',"pad":""')
    b.edit("size-over-limit", "size", "too_large", pad="x" * (MAX_MESSAGE_BYTES + 1 - head))
    b.edit("size-near-1mb", "size", "too_large", pad="x" * (1_000_000 - head))
    b.edit("size-over-1mb", "size", "too_large", pad="x" * (1_100_000 - head))
    b.edit("size-over-4mb", "size", "too_large", pad="x" * (4_200_000 - head))


def _recent(now: datetime, step: timedelta) -> Callable[[int], datetime]:
    """The i-th distinct aligned time, i steps before a minute safely in the past."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    return lambda i: start - i * step


def _raw(now: datetime) -> list[Case]:
    ts = _recent(now, timedelta(minutes=1))
    bar = {"v": 1, "symbol": SYMBOL, "ts": _iso(ts(0)), "interval": "1m", "open": 10.0, "high": 12.0,
           "low": 9.5, "close": 11.0, "volume": 1200, "source": "synthetic"}
    b = _Builder("raw", bar, SYMBOL)
    _common(b, "ts", "open")
    n = iter(range(1, 10_000))  # the next fresh ts for each further valid bar

    def valid(name: str, category: str = "valid", normalised: bool = False, **changes: Any) -> None:
        b.edit(name, category, None, normalised=normalised, **{"ts": _iso(ts(next(n))), **changes})

    valid("bar")
    valid("bar-zero-volume", volume=0)
    valid("bar-fx", symbol="EURUSD=X", volume=0, open=1.0841, high=1.0843, low=1.0839, close=1.0842)
    valid("bar-crypto", symbol="BTC-USD", open=97000.5, high=97100.0, low=96950.25, close=97050.0)
    valid("bar-future", symbol="GC=F", open=2000.0, high=2001.0, low=1999.0, close=2000.5)
    valid("bar-class-share", symbol="BRK.B", open=400.0, high=401.0, low=399.0, close=400.5)
    valid("bar-flat", open=11.0, high=11.0, low=11.0, close=11.0)
    valid("bar-max-volume", volume=10**15)
    valid("extra-fields", "extra_field", exchange="NMS", v2={"nested": [1, 2, {"a": None}]})
    head = len(_dump(bar)) + len(',"pad":""')
    valid("size-at-limit", "size", pad="x" * (MAX_MESSAGE_BYTES - head))
    lo, hi = PRICE_RANGE
    # Extreme but plausible: the ends of the price range, alternating in one series (ratio 1e17).
    for i, p in enumerate([lo, hi, lo, hi, 1.0]):
        valid(f"extreme-ratio-{i}", "extreme_ratio", symbol="ZZEXTREME", open=p, high=p, low=p, close=p)
    for name, offset in (("plus-0100", 1), ("minus-0500", -5), ("plus-0530", 5.5)):
        t = ts(next(n)).astimezone(timezone(timedelta(hours=offset)))
        b.edit(f"ts-offset-{name}", "non_utc_offset", None, normalised=True, ts=t.isoformat())
    b.edit("volume-2-64", "int_beyond_64bit", "out_of_range", volume=2**64)
    b.edit("volume-2-63", "int_beyond_64bit", "out_of_range", volume=2**63)
    b.edit("volume-huge", "int_beyond_64bit", "out_of_range", volume=10**40)
    b.edit("volume-implausible", "extreme_magnitude", "out_of_range", volume=10**15 + 1)
    b.edit("volume-negative", "zero_negative", "invalid_field", volume=-1)
    b.edit("volume-float", "wrong_type", "invalid_field", volume=1.5)
    b.edit("volume-exponent", "wrong_type", "invalid_field", volume=1e3)
    b.edit("volume-string", "wrong_type", "invalid_field", volume="1200")
    b.edit("price-1e300", "extreme_magnitude", "out_of_range", open=1e300, high=1e300, low=1e300, close=1e300)
    b.edit("price-1e-300", "extreme_magnitude", "out_of_range", open=1e-300, high=1e-300, low=1e-300,
           close=1e-300)
    b.edit("price-subnormal", "extreme_magnitude", "out_of_range", low=5e-324)
    b.edit("price-above-range", "extreme_magnitude", "out_of_range", high=1.0000001e9)
    b.edit("price-below-range", "extreme_magnitude", "out_of_range", low=0.99e-8)
    b.edit("high-below-low", "inconsistent", "inconsistent", high=9.0)
    b.edit("low-above-open", "inconsistent", "inconsistent", low=10.5)
    b.edit("high-below-close", "inconsistent", "inconsistent", high=10.5)
    b.edit("source-unknown", "wrong_type", "invalid_field", source="made-up")
    b.edit("source-nul", "control_chars", "invalid_field", source="synthetic\u0000")
    b.edit("close-missing", "missing_field", "missing_field", close=DROP)
    b.edit("ts-unaligned-seconds", "ts_unaligned", "unaligned", ts=_iso(ts(0) + timedelta(seconds=30)))
    b.edit("ts-unaligned-micro", "ts_unaligned", "unaligned", ts=_iso(ts(0) + timedelta(microseconds=1)))
    b.edit("ts-unaligned-5m", "ts_unaligned", "unaligned", interval="5m",
           ts=_iso(ts(0).replace(minute=(ts(0).minute // 5) * 5) + timedelta(minutes=1)))
    b.edit("ts-unaligned-1d", "ts_unaligned", "unaligned", interval="1d",
           ts=_iso(ts(0).replace(hour=0, minute=7)))
    b.edit("ts-next-hour", "ts_future", "future", ts=_iso(now.replace(second=0, microsecond=0) + timedelta(hours=1)))
    return b.out


def _indicators(now: datetime) -> list[Case]:
    ts = _recent(now, timedelta(minutes=1))
    ind = {"v": 1, "symbol": SYMBOL, "interval": "1m", "ts": _iso(ts(0)), "close": 11.0, "rsi": 55.5,
           "sma_short": 10.9, "sma_long": 10.8, "ema_short": 10.95, "ema_long": 10.85, "bb_upper": 11.5,
           "bb_middle": 10.9, "bb_lower": 10.3, "macd": 0.1, "macd_signal": 0.08, "macd_hist": 0.02,
           "volatility": 0.004}
    b = _Builder("indicators", ind, SYMBOL)
    _common(b, "ts", "close")
    n = iter(range(1, 10_000))

    def valid(name: str, category: str = "valid", **changes: Any) -> None:
        b.edit(name, category, None, **{"ts": _iso(ts(next(n))), **changes})

    valid("indicators")
    valid("warming-up", **{f: None for f in ind if f not in ("v", "symbol", "interval", "ts", "close")})
    valid("negative-macd-and-band", macd=-3.5, macd_signal=-2.0, macd_hist=-1.5, bb_lower=-0.5)
    valid("extra-fields", "extra_field", new_indicator=1.0)
    head = len(_dump(ind)) + len(',"pad":""')
    valid("size-at-limit", "size", pad="x" * (MAX_MESSAGE_BYTES - head))
    t = ts(next(n)).astimezone(timezone(timedelta(hours=-4)))
    b.edit("ts-offset-minus-0400", "non_utc_offset", None, normalised=True, ts=t.isoformat())
    b.edit("rsi-above-100", "extreme_magnitude", "out_of_range", rsi=100.5)
    b.edit("rsi-negative", "zero_negative", "invalid_field", rsi=-1.0)
    b.edit("volatility-negative", "zero_negative", "invalid_field", volatility=-0.01)
    b.edit("rsi-string", "wrong_type", "invalid_field", rsi="55")
    b.text("sma-1e999", "nan_infinity", "out_of_range", b'"sma_short":10.9', b'"sma_short":1e999')
    b.text("macd-minus-1e999", "nan_infinity", "out_of_range", b'"macd":0.1', b'"macd":-1e999')
    b.edit("rsi-int-beyond-64bit", "int_beyond_64bit", "out_of_range", rsi=2**70)
    b.edit("close-above-range", "extreme_magnitude", "out_of_range", close=1e10)
    b.edit("ts-unaligned", "ts_unaligned", "unaligned", ts=_iso(ts(0) + timedelta(seconds=1)))
    return b.out


def _alerts(now: datetime) -> list[Case]:
    ts = _recent(now, timedelta(minutes=1))

    def alert(i: int, rule: str = "rsi_overbought", **changes: Any) -> dict:
        t = ts(i)
        msg = {"v": 1, "id": alert_id(SYMBOL, "1m", t, rule), "symbol": SYMBOL, "interval": "1m", "ts": _iso(t),
               "rule": rule, "value": 71.5, "threshold": 70.0, "message": f"{SYMBOL} RSI 71.5 crossed above 70"}
        return msg | changes

    base = alert(0)
    b = _Builder("alerts", base, SYMBOL)
    _common(b, "ts", None)
    n = iter(range(1, 10_000))

    def valid(name: str, category: str = "valid", **changes: Any) -> None:
        b.edit(name, category, None, base=alert(next(n)), **changes)

    valid("alert")
    valid("message-sql", "injection", message="'); DROP TABLE alerts;--")
    valid("message-html", "injection", message="<script>alert(1)</script> & <b>bold</b>")
    valid("message-unicode", message="ZZHOSTILE \u2191 +2.5 % \u00e9\u00e8 \u4e2d\u6587 \U0001f680")
    valid("message-backslash", message="C:\\temp\\x \\N \\. end")
    valid("message-max-length", message="m" * 1000)
    valid("value-negative", value=-0.035, threshold=0.02, rule="price_change")
    valid("extra-fields", "extra_field", severity="high")
    i = next(n)
    t = ts(i).astimezone(timezone(timedelta(hours=9)))
    b.edit("ts-offset-plus-0900", "non_utc_offset", None, normalised=True, base=alert(i), ts=t.isoformat())
    b.edit("message-nul", "control_chars", "invalid_field", message="RSI\u0000 crossed")
    b.edit("message-newline", "control_chars", "invalid_field", message="line one\nline two")
    b.edit("message-escape", "control_chars", "invalid_field", message="\u001b[31mred\u001b[0m")
    b.edit("message-del", "control_chars", "invalid_field", message="del\u007f")
    b.edit("message-c1", "control_chars", "invalid_field", message="c1\u0085")
    b.edit("message-empty", "missing_field", "empty", message="")
    b.edit("message-too-long", "size", "too_large", message="m" * 1001)
    b.edit("message-missing", "missing_field", "missing_field", message=DROP)
    b.edit("rule-space", "injection", "invalid_field", rule="rsi overbought")
    b.edit("rule-uppercase", "wrong_type", "invalid_field", rule="RSI_OVERBOUGHT")
    b.edit("rule-sql", "injection", "invalid_field", rule="x'; DROP TABLE alerts;--")
    b.edit("rule-too-long", "size", "too_large", rule="r" * 65)
    b.edit("rule-newline", "control_chars", "invalid_field", rule="rsi_overbought\n")
    b.text("value-1e999", "nan_infinity", "out_of_range", b'"value":71.5', b'"value":1e999')
    b.edit("value-nan-string", "nan_infinity", "invalid_field", value="NaN")
    b.edit("threshold-null", "wrong_type", "invalid_field", threshold=None)
    b.raw("value-int-beyond-float", "int_beyond_64bit",
          _dump(base).replace(b'"value":71.5', b'"value":' + b"9" * 400, 1), "out_of_range")
    b.edit("value-int-beyond-64bit", "int_beyond_64bit", None, base=alert(next(n)), value=2**64)  # a float: fine
    b.edit("id-missing", "bad_id", "missing_field", id=DROP)
    b.edit("id-not-uuid", "bad_id", "invalid_field", id="not-a-uuid")
    b.edit("id-empty", "bad_id", "invalid_field", id="")
    b.edit("id-uppercase", "bad_id", "invalid_field", id=base["id"].upper())
    b.edit("id-braces", "bad_id", "invalid_field", id="{" + base["id"] + "}")
    b.edit("id-no-dashes", "bad_id", "invalid_field", id=base["id"].replace("-", ""))
    b.edit("id-trailing-newline", "bad_id", "invalid_field", id=base["id"] + "\n")
    b.edit("id-nul", "bad_id", "invalid_field", id=base["id"][:-1] + "\u0000")
    b.edit("id-number", "bad_id", "invalid_field", id=12345)
    b.edit("id-sql", "bad_id", "invalid_field", id="' OR 1=1;--")
    b.edit("ts-unaligned", "ts_unaligned", "unaligned", ts=_iso(ts(0) + timedelta(seconds=59)))
    return b.out


def _forecasts(now: datetime) -> list[Case]:
    made = now.replace(microsecond=0) - timedelta(seconds=30)
    first = now.replace(second=0, microsecond=0)  # the bar after the last closed one, at most

    def forecast(start: datetime = first, steps: int = 5, **changes: Any) -> dict:
        points = [{"ts": _iso(start + i * timedelta(minutes=1)), "yhat": 11.0 + i * 0.01, "lo": 10.5 - i * 0.01,
                   "hi": 11.5 + i * 0.01} for i in range(steps)]
        msg = {"v": 1, "symbol": SYMBOL, "interval": "1m", "made_at": _iso(made), "model": "arima(1,1,1)",
               "level": 0.95, "points": points}
        return msg | changes

    base = forecast()
    b = _Builder("forecasts", base, SYMBOL)
    _common(b, "made_at", None)
    models = iter(f"model-{i}" for i in range(10_000))  # each valid forecast its own key

    def valid(name: str, category: str = "valid", normalised: bool = False, **changes: Any) -> None:
        b.edit(name, category, None, normalised=normalised, **{"model": next(models), **changes})

    pts = base["points"]
    valid("forecast")
    valid("no-interval", points=[{"ts": p["ts"], "yhat": p["yhat"]} for p in pts])
    valid("no-level", level=DROP)
    valid("negative-yhat", points=[{**p, "yhat": -1.0, "lo": -2.0, "hi": 0.5} for p in pts])
    valid("max-points", points=forecast(steps=1000)["points"])
    valid("daily", interval="1d", points=forecast(
        start=first.replace(hour=0, minute=0) + timedelta(days=1), steps=3)["points"][:1])
    valid("extra-fields", "extra_field", metrics={"mase": 1.06})
    valid("made-at-offset", "non_utc_offset", normalised=True,
          made_at=made.astimezone(timezone(timedelta(hours=2))).isoformat(),
          points=[{**p, "ts": datetime.fromisoformat(p["ts"].replace("Z", "+00:00"))
                   .astimezone(timezone(timedelta(hours=-3))).isoformat()} for p in pts])
    b.edit("points-empty", "missing_field", "empty", points=[])
    b.edit("points-missing", "missing_field", "missing_field", points=DROP)
    b.edit("points-1001", "size", "too_large", points=forecast(steps=1001)["points"])
    b.edit("points-not-a-list", "wrong_type", "invalid_field", points={"ts": pts[0]["ts"], "yhat": 1.0})
    b.edit("points-reversed", "inconsistent", "inconsistent", points=pts[::-1])
    b.edit("points-repeated", "inconsistent", "inconsistent", points=[pts[0], pts[0]])
    b.edit("lo-above-hi", "inconsistent", "inconsistent", points=[{**pts[0], "lo": 12.0, "hi": 10.0}])
    b.edit("point-unaligned", "ts_unaligned", "unaligned",
           points=[{**pts[0], "ts": _iso(first + timedelta(seconds=30))}])
    b.edit("point-far-future", "ts_future", "future",
           points=[{**pts[0], "ts": _iso(first + timedelta(days=365))}])
    b.edit("point-2099", "ts_future", "future", points=[{**pts[0], "ts": "2099-01-01T00:00:00Z"}])
    b.edit("point-1800", "ts_far_past", "out_of_range", points=[{**pts[0], "ts": "1800-01-01T00:00:00Z"}])
    b.edit("point-naive", "wrong_type", "invalid_field", points=[{**pts[0], "ts": "2024-01-02T14:30:00"}])
    b.edit("made-at-tomorrow", "ts_future", "future", made_at=_iso(made + timedelta(days=1)))
    b.text("yhat-1e999", "nan_infinity", "out_of_range", b'"yhat":11.0', b'"yhat":1e999')
    b.edit("yhat-nan-string", "nan_infinity", "invalid_field", points=[{**pts[0], "yhat": "NaN"}])
    b.edit("yhat-missing", "missing_field", "missing_field", points=[{"ts": pts[0]["ts"]}])
    b.raw("yhat-int-beyond-float", "int_beyond_64bit",
          _dump(base).replace(b'"yhat":11.0', b'"yhat":' + b"9" * 400, 1), "out_of_range")
    valid("yhat-int-beyond-64bit", "int_beyond_64bit", points=[{**pts[0], "yhat": 2**64}])  # a float: fine
    b.edit("level-above-1", "wrong_type", "invalid_field", level=1.5)
    b.edit("level-zero", "zero_negative", "invalid_field", level=0)
    b.edit("model-empty", "bad_id", "empty", model="")
    b.edit("model-nul", "bad_id", "invalid_field", model="arima\u0000")
    b.edit("model-newline", "bad_id", "invalid_field", model="arima\n(1,1,1)")
    b.edit("model-too-long", "bad_id", "too_large", model="m" * 65)
    b.edit("model-number", "bad_id", "invalid_field", model=7)
    return b.out


_BUILDERS = {"raw": _raw, "indicators": _indicators, "alerts": _alerts, "forecasts": _forecasts}


def cases(topic_kind: str | None = None, *, now: datetime | None = None) -> list[Case]:
    """The cases of one topic kind (all four when None), with times relative to ``now``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    kinds = TOPIC_KINDS if topic_kind is None else (topic_kind,)
    out = [case for kind in kinds for case in _BUILDERS[kind](now)]
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "case names are unique"
    return out
