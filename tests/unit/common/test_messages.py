"""Message models: what is valid, what is rejected and why, and the round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import (
    Alert,
    Bar,
    Codec,
    Forecast,
    ForecastPoint,
    Indicators,
    alert_id,
    interval_length,
)

GOOD = (b'{"v":1,"symbol":"AAPL","ts":"2024-01-02T14:30:00Z","interval":"1m","open":10.0,'
        b'"high":12.0,"low":9.5,"close":11.0,"volume":1200,"source":"synthetic"}')
BARS = Codec(Bar)


def test_good_bar_decodes_and_round_trips() -> None:
    bar = BARS.decode(GOOD)
    assert bar.ts == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (10.0, 12.0, 9.5, 11.0, 1200)
    assert BARS.decode(BARS.encode(bar)) == bar


def test_unknown_fields_are_ignored() -> None:
    assert BARS.decode(GOOD[:-1] + b',"exchange":"NMS","v2field":{"a":1}}').symbol == "AAPL"


@pytest.mark.parametrize("symbol", ["BRK.B", "GC=F", "EURUSD=X", "ES=F", "BTC-USD", "A", "X" * 15])
def test_real_world_symbols_are_valid(symbol: str) -> None:
    assert BARS.decode(GOOD.replace(b"AAPL", symbol.encode())).symbol == symbol


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"{not json", "malformed"),
        (b"", "malformed"),
        (None, "empty"),
        (GOOD.replace(b'"open":10.0', b'"open":NaN'), "malformed"),
        (GOOD.replace(b',"close":11.0', b""), "missing_field"),
        (GOOD.replace(b'"open":10.0', b'"open":-10.0'), "invalid_field"),
        (GOOD.replace(b'"open":10.0', b'"open":0'), "invalid_field"),
        (GOOD.replace(b'"open":10.0', b'"open":1e999'), "out_of_range"),
        (GOOD.replace(b'"high":12.0', b'"high":9.0'), "inconsistent"),  # high < low
        (GOOD.replace(b'"low":9.5', b'"low":10.5'), "inconsistent"),  # low > open
        (GOOD.replace(b'"high":12.0', b'"high":10.5'), "inconsistent"),  # high < close
        (GOOD.replace(b'"volume":1200', b'"volume":-1'), "invalid_field"),
        (GOOD.replace(b'"volume":1200', b'"volume":1.5'), "invalid_field"),
        (GOOD.replace(b"AAPL", b"aapl"), "invalid_field"),
        (GOOD.replace(b"AAPL", b"A" * 16), "invalid_field"),
        (GOOD.replace(b'"v":1', b'"v":2'), "invalid_field"),
        (GOOD.replace(b"14:30:00Z", b"14:30:00"), "invalid_field"),  # no UTC offset
        (GOOD.replace(b"2024-01-02T14:30:00Z", b"yesterday"), "invalid_field"),
        (GOOD.replace(b'"synthetic"', b'"made-up"'), "invalid_field"),
        (b"[1,2,3]", "invalid_field"),
    ],
)
def test_invalid_bars_are_rejected_with_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        BARS.decode(data)
    assert info.value.reason == reason
    assert info.value.detail


def test_indicator_alert_forecast_round_trip() -> None:
    ts = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    ind = Indicators(symbol="AAPL", interval="1m", ts=ts, close=11.0, rsi=55.5)
    assert Codec(Indicators).decode(Codec(Indicators).encode(ind)) == ind
    assert ind.sma_long is None
    alert = Alert(id=alert_id("AAPL", "1m", ts, "rsi_overbought"), symbol="AAPL", interval="1m", ts=ts,
                  rule="rsi_overbought", value=71.0, threshold=70.0, message="AAPL RSI 71.0 crossed above 70")
    assert Codec(Alert).decode(Codec(Alert).encode(alert)) == alert
    fc = Forecast(symbol="AAPL", interval="1m", made_at=ts, model="linreg",
                  points=[ForecastPoint(ts=ts, yhat=1.0, lo=0.5, hi=1.5)])
    assert Codec(Forecast).decode(Codec(Forecast).encode(fc)) == fc


def test_alert_id_is_deterministic_and_distinguishes_inputs() -> None:
    ts = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    same = datetime.fromisoformat("2024-01-02T15:30:00+01:00")
    assert alert_id("AAPL", "1m", ts, "r") == alert_id("AAPL", "1m", same, "r")
    ids = {alert_id(*args) for args in [("AAPL", "1m", ts, "r"), ("MSFT", "1m", ts, "r"),
                                         ("AAPL", "1d", ts, "r"), ("AAPL", "1m", ts, "q")]}
    assert len(ids) == 4


@pytest.mark.parametrize("interval, minutes", [("1m", 1), ("15m", 15), ("1h", 60), ("1d", 1440), ("1wk", 10080)])
def test_interval_length(interval: str, minutes: int) -> None:
    assert interval_length(interval).total_seconds() == minutes * 60
