"""The processor over the whole domain the decoder accepts: never raises, stays finite, first bar wins."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import force_setattr

from stockpipe.analytics.alerts import AlertConfig
from stockpipe.analytics.indicators import CLOSE_DOMAIN, IndicatorConfig, IndicatorState
from stockpipe.analytics.processor import Processor, UnprocessableBar
from stockpipe.common.messages import INDICATOR_FIELDS, MAX_VOLUME, PRICE_RANGE, Alert, Bar, Codec, Indicators

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
LO, HI = PRICE_RANGE
SMALL = IndicatorConfig(rsi_period=3, sma_short=2, sma_long=4, ema_short=2, ema_long=4, bollinger_period=3,
                        macd_fast=2, macd_slow=4, macd_signal=2, volatility_period=3)
INDICATORS, ALERTS = Codec(Indicators), Codec(Alert)


def bar(i: int, close: float, volume: int = 1000, symbol: str = "AAPL", interval: str = "1m",
        spread: float = 1.0) -> Bar:
    step = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}[interval]
    return Bar(symbol=symbol, ts=T0 + i * step, interval=interval, open=close, high=min(close * spread, HI),
               low=close, close=close, volume=volume, source="synthetic")


def run(processor: Processor, bars: list[Bar]) -> list:
    return [processor.process(b) for b in bars]


def assert_sound(out: tuple) -> None:
    """Finite values, and messages the ingestor's decoders accept as they are."""
    ind, alerts = out
    if ind is None:
        return
    values = [getattr(ind, f) for f in INDICATOR_FIELDS]
    assert all(v is None or math.isfinite(v) for v in values), values
    assert INDICATORS.decode(INDICATORS.encode(ind)) == ind
    for alert in alerts:
        assert math.isfinite(alert.value) and math.isfinite(alert.threshold)
        assert ALERTS.decode(ALERTS.encode(alert)) == alert


# Every price the decoder accepts, with weight on its ends and on jumps between them.
PRICES = st.one_of(st.floats(LO, HI), st.sampled_from([LO, HI, LO * (1 + 2**-52), HI * (1 - 2**-53), 1.0]),
                   st.floats(LO, 1e-6), st.floats(1e6, HI))
VOLUMES = st.one_of(st.integers(0, MAX_VOLUME), st.sampled_from([0, 1, MAX_VOLUME]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(closes=st.lists(PRICES, min_size=1, max_size=80), volumes=st.lists(VOLUMES, min_size=80, max_size=80),
       small=st.booleans())
def test_any_accepted_bars_keep_the_state_finite(closes: list[float], volumes: list[int], small: bool) -> None:
    processor = Processor(SMALL if small else IndicatorConfig(), AlertConfig(cooldown_bars=0))
    for i, close in enumerate(closes):
        assert_sound(processor.process(bar(i, close, volumes[i])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(closes=st.lists(st.one_of(st.floats(*CLOSE_DOMAIN), st.sampled_from(CLOSE_DOMAIN)), min_size=1, max_size=60))
def test_indicator_state_is_finite_over_its_whole_domain(closes: list[float]) -> None:
    # Wider than the decoder's range: the state's own domain, 1e-100 .. 1e100.
    state = IndicatorState(SMALL)
    for close in closes:
        assert all(v is None or math.isfinite(v) for v in state.update(close))


def test_the_issue_12_jump_no_longer_raises() -> None:
    # 1e300 then 1e-300 raised "math domain error" in the volatility update: such closes are now
    # rejected by the decoder (out_of_range) and the state's domain check, and the widest jump
    # the state does take is finite.
    state = IndicatorState(SMALL)
    for close in [1e100, 1e-100] * 10:
        assert all(v is None or math.isfinite(v) for v in state.update(close))
    with pytest.raises(ValueError):
        state.update(1e300)


@pytest.mark.parametrize("bad", [1e300, 1e-300, math.inf, math.nan, 0.0])
def test_a_close_the_state_cannot_take_is_reported_before_any_change(bad: float) -> None:
    clean, dirty = Processor(SMALL, AlertConfig()), Processor(SMALL, AlertConfig())
    bars = [bar(i, 100.0 + i % 7) for i in range(30)]
    run(clean, bars[:10])
    run(dirty, bars[:10])
    poisoned = bar(10, 100.0)
    force_setattr(poisoned, "close", bad)  # only reachable around the decoder
    with pytest.raises(UnprocessableBar) as info:
        dirty.process(poisoned)
    assert info.value.reason == "out_of_range"
    assert run(dirty, bars[10:]) == run(clean, bars[10:])
    fresh = bar(0, 1.0, symbol="NEW")
    force_setattr(fresh, "close", bad)
    with pytest.raises(UnprocessableBar):
        dirty.process(fresh)
    assert ("NEW", "1m") not in dirty.series


def test_a_resent_bar_with_other_values_changes_nothing() -> None:
    # The first copy of a bar wins: a re-sent one (other prices, other volume) is ignored, and
    # every later indicator and alert is what it would have been without it.
    closes = [100.0, 101, 99, 104, 98, 97, 105, 110, 90, 91, 92, 120, 80, 81, 82]
    bars = [bar(i, c, 1000 + 500 * (i % 3)) for i, c in enumerate(closes)]
    plain = run(Processor(SMALL, AlertConfig(cooldown_bars=0)), bars)
    assert sum(len(a) for _, a in plain) > 3  # alerts fire: the comparison covers them
    again = Processor(SMALL, AlertConfig(cooldown_bars=0))
    out = []
    for i, b in enumerate(bars):
        out.append(again.process(b))
        resent = bar(i, b.close * 3, 10**9)
        assert again.process(resent) == (None, [])
        assert again.process(b) == (None, [])  # the very same bar again, too
    assert out == plain
    assert again.duplicates == 2 * len(bars)


def test_late_bars_are_skipped() -> None:
    p = Processor(SMALL, AlertConfig())
    run(p, [bar(i, 100.0 + i) for i in range(5)])
    assert p.process(bar(2, 50.0)) == (None, []) and p.late == 1


def test_thresholds_follow_the_interval() -> None:
    # A 2.5 % move: news on 1-minute bars (threshold 2 %), within the hourly (3 %) and daily (5 %) ones.
    closes = [100.0, 100.0, 102.5]
    fired = {}
    for interval in ("1m", "1h", "1d"):
        p = Processor(SMALL, AlertConfig(rules=("price_change",)))
        fired[interval] = [a.rule for b in [bar(i, c, interval=interval) for i, c in enumerate(closes)]
                           for a in p.process(b)[1]]
    assert fired == {"1m": ["price_change"], "1h": [], "1d": []}


def test_zero_volume_never_spikes() -> None:
    # FX bars have volume 0: the baseline is never defined, the rule stays silent, nothing divides by 0.
    p = Processor(SMALL, AlertConfig(rules=("volume_spike",), volume_window=3, cooldown_bars=0))
    volumes = [0] * 10 + [1_000_000] + [0] * 5 + [5, 5, 5, 1_000_000]
    out = run(p, [bar(i, 1.08, v, symbol="EURUSD=X") for i, v in enumerate(volumes)])
    assert [a for _, alerts in out for a in alerts] == []
    # Once the whole window has volume, spikes count again.
    more = run(p, [bar(len(volumes) + i, 1.08, v, symbol="EURUSD=X") for i, v in enumerate([5, 5, 5, 100])])
    assert [a.rule for _, alerts in more for a in alerts] == ["volume_spike"]
