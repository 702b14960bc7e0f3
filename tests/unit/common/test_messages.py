"""Message models: what is valid, what is rejected and why, and the round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stockpipe.common.errors import InvalidMessage
from stockpipe.common.messages import (
    DECODE_ERRORS,
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


# --- what the tables and the state cannot hold (issue 12) ----------------------------------------------

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def bar_bytes(**changes: object) -> bytes:
    import json

    bar = json.loads(GOOD) | changes
    return json.dumps({k: v for k, v in bar.items() if v is not DROP}).encode()


DROP = object()


def reason(data: bytes, codec: Codec = BARS) -> str:
    with pytest.raises(InvalidMessage) as info:
        codec.decode(data)
    return info.value.reason


def test_v_is_required_wherever_it_is() -> None:
    assert reason(bar_bytes(v=DROP)) == "missing_field"
    assert BARS.decode(b'{"symbol":"AAPL","v":1' + GOOD[len(b'{"v":1,"symbol":"AAPL"'):]).symbol == "AAPL"
    # Python code still builds messages without spelling v out; they encode it.
    assert Codec(Bar).encode(BARS.decode(GOOD)).startswith(b'{"v":1,')


@pytest.mark.parametrize("symbol", ["AAPL\n", "AAPL\r", "\nAAPL", "AA PL", "AAPL\u0000"])
def test_names_match_in_full(symbol: str) -> None:
    assert reason(bar_bytes(symbol=symbol)) == "invalid_field"


def test_times_are_normalised_to_utc() -> None:
    bar = BARS.decode(bar_bytes(ts="2024-01-02T09:30:00-05:00"))
    assert bar.ts == datetime(2024, 1, 2, 14, 30, tzinfo=UTC) and bar.ts.tzinfo is UTC
    assert BARS.encode(bar) == BARS.encode(BARS.decode(GOOD))  # written back as Z


@pytest.mark.parametrize("interval, ts, ok", [
    ("1m", "2024-01-02T14:31:00Z", True),
    ("1m", "2024-01-02T14:31:01Z", False),
    ("5m", "2024-01-02T14:35:00Z", True),
    ("5m", "2024-01-02T14:36:00Z", False),
    ("7m", "2000-01-03T00:07:00Z", True),   # grids that do not divide an hour count from GRID_ORIGIN
    ("7m", "2024-01-02T14:35:00Z", False),
    ("1h", "2024-01-02T14:30:00Z", True),   # 09:30 New York: hourly bars start with the session
    ("1h", "2024-01-02T14:40:00Z", False),
    ("1d", "2024-01-02T05:00:00Z", True),   # midnight in New York
    ("1d", "2024-01-01T18:30:00Z", True),   # midnight in Mumbai
    ("1d", "2024-01-02T05:01:00Z", False),
])
def test_alignment(interval: str, ts: str, ok: bool) -> None:
    data = bar_bytes(interval=interval, ts=ts)
    if ok:
        assert BARS.decode(data).interval == interval
    else:
        assert reason(data) == "unaligned"


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_future_bound_is_one_interval_plus_the_tolerance() -> None:
    from stockpipe.common import messages

    now = datetime.now(UTC).replace(second=0, microsecond=0)  # not NOW: collection was a while ago
    tolerance = messages.clock_skew_tolerance()
    try:
        messages.set_clock_skew_tolerance(60)
        assert BARS.decode(bar_bytes(ts=_iso(now + timedelta(minutes=1))))  # the still-running minute + 1
        assert reason(bar_bytes(ts=_iso(now + timedelta(minutes=3)))) == "future"
        assert BARS.decode(bar_bytes(ts=_iso(now.replace(hour=0, minute=0) + timedelta(days=1)), interval="1d"))
        assert reason(bar_bytes(ts="2099-01-01T00:00:00Z", interval="1d")) == "future"
        messages.set_clock_skew_tolerance(3600)
        assert BARS.decode(bar_bytes(ts=_iso(now + timedelta(minutes=30))))
        messages.set_clock_skew_tolerance(0)
        assert reason(bar_bytes(ts=_iso(now + timedelta(minutes=30)))) == "future"
    finally:
        messages.set_clock_skew_tolerance(tolerance)


def test_clock_skew_tolerance_comes_from_settings() -> None:
    from stockpipe.common import messages
    from stockpipe.common.errors import SettingsError
    from stockpipe.common.settings import CommonSettings, load

    tolerance = messages.clock_skew_tolerance()
    try:
        assert load(CommonSettings, {"CLOCK_SKEW_TOLERANCE": "5"}).clock_skew_tolerance == 5
        assert messages.clock_skew_tolerance() == 5
        with pytest.raises(SettingsError, match="CLOCK_SKEW_TOLERANCE='-1'"):
            load(CommonSettings, {"CLOCK_SKEW_TOLERANCE": "-1"})
    finally:
        messages.set_clock_skew_tolerance(tolerance)


@pytest.mark.parametrize("ts, why", [("1899-12-31T23:59:00Z", "out_of_range"),
                                     ("0001-01-01T00:00:00+00:01", "out_of_range"),
                                     ("9999-12-31T23:59:00-00:01", "out_of_range")])
def test_far_times(ts: str, why: str) -> None:
    assert reason(bar_bytes(ts=ts)) == why


@pytest.mark.parametrize("changes, why", [
    ({"open": 1e-9, "low": 1e-9}, "out_of_range"),
    ({"high": 2e9}, "out_of_range"),
    ({"volume": 2**63}, "out_of_range"),
    ({"volume": 10**15 + 1}, "out_of_range"),
    ({"volume": 10**15}, None),
    ({"open": 1e-8, "low": 1e-8, "close": 1e-8, "high": 1e9}, None),  # both ends of the range at once
])
def test_plausible_ranges(changes: dict, why: str | None) -> None:
    data = bar_bytes(**changes)
    if why is None:
        assert BARS.decode(data)
    else:
        assert reason(data) == why


def test_python_built_messages_are_checked_too() -> None:
    with pytest.raises(ValueError, match="out_of_range"):
        Bar(symbol="AAPL", ts=NOW, interval="1m", open=1e300, high=1e300, low=1e300, close=1e300, volume=1,
            source="synthetic")
    with pytest.raises(ValueError, match="no UTC offset"):
        Bar(symbol="AAPL", ts=NOW.replace(tzinfo=None), interval="1m", open=1, high=1, low=1, close=1, volume=1,
            source="synthetic")
    bar = Bar(symbol="AAPL", ts=NOW.astimezone(timezone(timedelta(hours=2))), interval="1m", open=1, high=1, low=1,
              close=1, volume=1, source="synthetic")
    assert bar.ts.tzinfo is UTC


ALERT = Alert(id=alert_id("AAPL", "1m", datetime(2024, 1, 2, 14, 30, tzinfo=UTC), "rsi_overbought"),
              symbol="AAPL", interval="1m", ts=datetime(2024, 1, 2, 14, 30, tzinfo=UTC), rule="rsi_overbought",
              value=71.0, threshold=70.0, message="AAPL RSI 71.0 crossed above 70")


@pytest.mark.parametrize("changes, why", [
    ({"message": "RSI\u0000"}, "invalid_field"),
    ({"message": "two\nlines"}, "invalid_field"),
    ({"message": "x" * 1001}, "too_large"),
    ({"id": ALERT.id.upper()}, "invalid_field"),
    ({"id": ALERT.id + "\n"}, "invalid_field"),
    ({"rule": "rsi overbought"}, "invalid_field"),
    ({"message": "<b>'; DROP TABLE alerts;--</b> \u00e9 \U0001f680"}, None),
])
def test_alert_text_and_id(changes: dict, why: str | None) -> None:
    import json

    codec = Codec(Alert)
    data = json.dumps(json.loads(codec.encode(ALERT)) | changes).encode()
    if why is None:
        assert codec.decode(data).message == changes["message"]
    else:
        assert reason(data, codec) == why


def test_forecast_points_bounds() -> None:
    made = NOW - timedelta(seconds=10)

    def fc(points: list[datetime], **kw: object) -> Forecast:
        return Forecast(symbol="AAPL", interval="1m", made_at=made, model="naive",
                        points=[ForecastPoint(ts=t, yhat=1.0) for t in points], **kw)

    steps = [NOW + timedelta(minutes=i) for i in range(5)]
    assert fc(steps).points[-1].ts == steps[-1]
    with pytest.raises(ValueError, match="future"):
        fc([NOW + timedelta(minutes=10)])  # one point may look one interval ahead, not ten
    with pytest.raises(ValueError, match="inconsistent"):
        fc(steps[::-1])
    with pytest.raises(ValueError, match="unaligned"):
        fc([NOW + timedelta(seconds=30)])
    with pytest.raises(ValueError, match="future"):
        Forecast(symbol="AAPL", interval="1m", made_at=NOW + timedelta(hours=1), model="naive",
                 points=[ForecastPoint(ts=NOW + timedelta(hours=1), yhat=1.0)])
    with pytest.raises(ValueError, match="inconsistent"):
        ForecastPoint(ts=NOW, yhat=1.0, lo=2.0, hi=1.0)


def test_size_limit() -> None:
    from stockpipe.common.messages import MAX_MESSAGE_BYTES

    head = len(GOOD) + len(',"pad":""')
    assert BARS.decode(GOOD[:-1] + b',"pad":"' + b"x" * (MAX_MESSAGE_BYTES - head) + b'"}')
    assert reason(GOOD[:-1] + b',"pad":"' + b"x" * (MAX_MESSAGE_BYTES - head + 1) + b'"}') == "too_large"


def test_future_is_judged_against_the_message_time_too() -> None:
    # A bar 10 minutes ahead of the time it reached Kafka stays refused when replayed an hour later.
    received = datetime(2024, 1, 2, 14, 20, tzinfo=UTC).timestamp()
    assert BARS.decode(GOOD)  # now: long past
    with pytest.raises(InvalidMessage) as info:
        BARS.decode(GOOD, received_at=received)
    assert info.value.reason == "future"
    with pytest.raises(DECODE_ERRORS) as raw:
        BARS.decoder.decode(GOOD, received_at=received)
    assert Codec.invalid(raw.value).reason == "future"
    assert BARS.decode(GOOD, received_at=received + 9 * 60)  # 1 minute + 60 s tolerance ahead: fine
    fc = Codec(Forecast)
    data = fc.encode(Forecast(symbol="AAPL", interval="1m", made_at=datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
                              model="naive", points=[ForecastPoint(ts=datetime(2024, 1, 2, 14, 31, tzinfo=UTC),
                                                                   yhat=1.0)]))
    assert fc.decode(data, received_at=received + 10 * 60)
    with pytest.raises(InvalidMessage, match="future"):
        fc.decode(data, received_at=received)


def test_alert_id_is_uuid5_of_its_fields() -> None:
    # alert_id spells uuid5 out for speed: it must stay the same string for any input.
    import random
    import uuid
    from datetime import UTC, datetime, timedelta, timezone

    from stockpipe.common.messages import _ALERT_NAMESPACE, alert_id

    rng = random.Random(3)
    ts = datetime(2024, 1, 2, tzinfo=UTC)
    for _ in range(2000):
        symbol = "".join(rng.choice("ABCXYZ019.^=-") for _ in range(rng.randint(1, 15)))
        if rng.random() < 0.6:  # else the previous ts again (alert_id caches its text), maybe in another zone
            ts = datetime(1900, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 80_000_000 * 60),
                                                             microseconds=rng.choice([0, 7]))
        if rng.random() < 0.3:
            ts = ts.astimezone(timezone(timedelta(hours=rng.randint(-12, 12))))
        interval, rule = rng.choice(["1m", "5m", "1h", "1d", "1wk"]), rng.choice(["price_change", "rsi_oversold", "é"])
        utc = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert alert_id(symbol, interval, ts, rule) == str(uuid.uuid5(_ALERT_NAMESPACE, f"{symbol}|{interval}|{utc}|{rule}"))
