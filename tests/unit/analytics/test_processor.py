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


# -- the batched path: columns, bit for bit the scalar path ---------------------------------------------------


def _bits(result) -> object:
    """A result with every float as its bit pattern (so -0.0 != 0.0 and NaN == NaN)."""
    if not isinstance(result, tuple):
        return result if result is None else repr(result)
    values, alerts = result
    return [None if v is None else v.hex() for v in values], alerts


def _walk(seed: int, bars: int, symbols: int, jumps: bool = True) -> list[Bar]:
    """Bars of many series arriving unevenly, with x100 jumps, flat runs and both ends of the range."""
    import random

    rng = random.Random(seed)
    names = [f"S{i}" for i in range(symbols)]
    price = dict.fromkeys(names, 100.0)
    count = dict.fromkeys(names, 0)
    out = []
    for _ in range(bars):
        s = rng.choice(names[:rng.randint(1, symbols)])  # some series far busier than others
        u = rng.random()
        if jumps and u < 0.01:
            price[s] *= 100
        elif jumps and u < 0.02:
            price[s] /= 100
        elif u < 0.1:
            pass  # flat: M2 collapses to exactly zero
        else:
            price[s] *= math.exp(rng.gauss(0, 0.01))
        price[s] = min(max(price[s], LO), HI)
        volume = rng.choice([0, 1, MAX_VOLUME, rng.randint(10**14, MAX_VOLUME)]) if u > 0.97 else rng.randint(1, 10**7)
        out.append(bar(count[s], price[s], volume, symbol=s))
        count[s] += 1
    return out


COLUMN_CONFIGS = {
    "default": IndicatorConfig(),
    "small": SMALL,
    "bollinger widest, gated": IndicatorConfig(bollinger_period=60, rsi_frequency=3, macd_frequency=2),
}


@pytest.mark.parametrize("cooldown", [0, 5])
@pytest.mark.parametrize("name", COLUMN_CONFIGS)
def test_batched_path_is_the_scalar_path_bit_for_bit(name: str, cooldown: int) -> None:
    # 20,000 bars of 25 series in batches of random sizes, through the columns, against one
    # bar at a time on the scalar path: every value identical to the last bit, every alert equal.
    # The run crosses warm-up, 100+ exact recomputes per busy series, many M2 collapses, zero
    # volumes (no baseline) and volumes whose window sums pass 2**53 (Python's exact integers).
    import random

    cfg = COLUMN_CONFIGS[name]
    bars = _walk(7, 20_000, 25)
    alerts = AlertConfig(cooldown_bars=cooldown, volume_window=10)  # 10 x MAX_VOLUME > 2**53
    scalar = Processor(cfg, alerts, batched=False)
    expected = [scalar.process_many([b], [0])[0] for b in bars]
    batched = Processor(cfg, alerts)
    rng, got, i = random.Random(1), [], 0
    while i < len(bars):
        size = rng.choice([1, 2, 50, 700, 3000])
        got += batched.process_many(bars[i:i + size], [0] * len(bars[i:i + size]))
        i += size
    assert len(batched.columns) >= 20  # the busy series run in columns (a rare one may still warm up)
    raised = [a.rule for r in expected if r for a in r[1]]
    assert len(raised) > 1000 and {"volume_spike", "price_change", "macd_cross_up"} <= set(raised)
    mismatched = [j for j, (a, b) in enumerate(zip(expected, got)) if _bits(a) != _bits(b)]
    assert not mismatched, f"{len(mismatched)} bars differ, first at {mismatched[0]}"


def test_batched_path_handles_duplicates_late_and_bad_closes_in_one_batch() -> None:
    clean = Processor(SMALL, AlertConfig(cooldown_bars=0))
    dirty = Processor(SMALL, AlertConfig(cooldown_bars=0))
    bars = _walk(3, 400, 4, jumps=False)
    want = clean.process_many(bars, [0] * len(bars))
    noisy, where = [], []
    for b in bars:
        where.append(len(noisy))
        noisy.append(b)
        if b.ts.minute % 3 == 0:
            noisy.append(b)  # the same bar again
            noisy.append(bar(int((b.ts - T0).total_seconds() // 60), b.close * 2, symbol=b.symbol))  # re-sent
        if b.ts.minute % 7 == 0:
            poisoned = bar(10_000, 1.0, symbol=b.symbol)
            force_setattr(poisoned, "close", math.inf)
            noisy.append(poisoned)
    got = dirty.process_many(noisy, [0] * len(noisy))
    assert [_bits(got[j]) for j in where] == [_bits(w) for w in want]
    others = [got[j] for j in range(len(noisy)) if j not in set(where)]
    assert all(r is None or isinstance(r, UnprocessableBar) for r in others)
    assert any(isinstance(r, UnprocessableBar) and r.reason == "out_of_range" for r in others)


def test_dropped_series_free_their_columns_and_rebuild_the_same() -> None:
    bars = _walk(11, 3000, 6)
    p = Processor(SMALL, AlertConfig())
    first = p.process_many(bars, [int(b.symbol[1:]) % 2 for b in bars])
    assert len(p.columns) == 6
    assert p.drop_partitions({0}) == 3 and len(p.columns) == 3
    evens = [b for b in bars if int(b.symbol[1:]) % 2 == 0]
    again = p.process_many(evens, [0] * len(evens))  # reuses the freed columns
    assert len(p.columns) == 6
    assert [_bits(r) for r in again] == [_bits(r) for b, r in zip(bars, first) if int(b.symbol[1:]) % 2 == 0]
