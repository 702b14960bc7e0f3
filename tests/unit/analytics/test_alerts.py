"""Alert rules: crossings, cooldown, missing inputs, ids, messages, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from stockpipe.analytics.alerts import RULES, AlertConfig, AlertState
from stockpipe.analytics.indicators import IndicatorState
from stockpipe.common.messages import INDICATOR_FIELDS, Bar, Indicators, alert_id

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
NO_COOLDOWN = AlertConfig(cooldown_bars=0)


def bar(i: int, close: float = 100.0, volume: int = 1000, symbol: str = "AAPL") -> Bar:
    return Bar(symbol=symbol, ts=T0 + timedelta(minutes=i), interval="1m", open=close, high=close,
               low=close, close=close, volume=volume, source="synthetic")


def values(**fields: float | None) -> tuple:
    unknown = set(fields) - set(INDICATOR_FIELDS)
    assert not unknown, unknown
    return tuple(fields.get(f) for f in INDICATOR_FIELDS)


def fired(steps: list[dict], config: AlertConfig = NO_COOLDOWN, rule: str | None = None) -> list[int]:
    """Bar indexes at which `rule` fired (all rules when None) over steps of
    {close, volume, <indicator fields>}."""
    state = AlertState(config)
    out = []
    for i, step in enumerate(steps):
        step = dict(step)
        b = bar(i, step.pop("close", 100.0), step.pop("volume", 1000))
        for alert in state.update(b, values(**step)):
            if rule is None or alert.rule == rule:
                out.append(i)
    return out


def series(field: str, xs: list) -> list[dict]:
    return [{field: x} for x in xs]


# --- each rule fires where its condition starts ---------------------------------------------------

@pytest.mark.parametrize("rule, steps, expected", [
    # RSI: above 70 / below 30, strict; a value *at* the level is not beyond it.
    ("rsi_overbought", series("rsi", [None, 65, 69, 71.3, 75, 69, 72]), [3, 6]),
    ("rsi_overbought", series("rsi", [65, 70, 70.0001]), [2]),
    ("rsi_overbought", series("rsi", [None, 75, 80, 65]), []),  # first evaluation: baseline only
    ("rsi_oversold", series("rsi", [50, 31, 29, 28, 35, 25]), [2, 5]),
    ("rsi_oversold", series("rsi", [50, 30, 30]), []),
    ("volatility_high", series("volatility", [0.001, 0.006, 0.007, 0.004, 0.006]), [1, 4]),
    # bar-to-bar close change beyond 2 %, up or down; a run of big moves is one start
    ("price_change", series("close", [100, 101, 103.5, 104, 101]), [2, 4]),
    ("price_change", series("close", [100, 101, 104, 107.2, 110.5]), [2]),
    ("price_change", series("close", [100, 103, 100]), [2]),  # bar 1: first evaluation; then down
    ("price_change", series("close", [100, 100.5, 103, 100, 97]), [2, 3]),  # up, then down: two starts
    ("price_change", series("close", [100, 102, 100]), []),  # +2.0 % and -1.96 %: not beyond
    ("macd_cross_up", [{"macd": m, "macd_signal": s} for m, s in
                       [(1, 2), (1.5, 1.4), (1.6, 1.5), (1.0, 1.2), (1.3, 1.2)]], [1, 4]),
    ("macd_cross_down", [{"macd": m, "macd_signal": s} for m, s in
                         [(1, 2), (1.5, 1.4), (1.6, 1.5), (1.0, 1.2), (1.3, 1.2)]], [3]),
    ("macd_cross_up", [{"macd": m, "macd_signal": s} for m, s in [(1, 2), (2, 2), (2.1, 2)]], [2]),
    ("bollinger_breakout_up", [{"close": c, "bb_upper": 102.0, "bb_lower": 98.0} for c in
                               [100, 101, 102, 102.5, 103, 101, 102.01]], [3, 6]),
    ("bollinger_breakout_down", [{"close": c, "bb_upper": 102.0, "bb_lower": 98.0} for c in
                                 [100, 97.5, 97, 99, 98, 97.99]], [1, 5]),
])
def test_rule_fires_where_condition_starts(rule: str, steps: list[dict], expected: list[int]) -> None:
    assert fired(steps, rule=rule) == expected


@pytest.mark.parametrize("volumes, expected", [
    # window 3: mean of the 3 bars *before* this one
    # (bar 3 is the first evaluation: it only sets the baseline)
    ([100, 100, 100, 100, 350, 400, 100, 500], [4]),
    ([100, 100, 100, 100, 300], []),               # exactly 3x is not above 3x
    ([100, 100, 100, 100, 301, 900, 100, 100, 100, 1000], [4, 9]),
    ([100, 100, 100, 900, 100, 100, 100, 900], [7]),
    ([0, 0, 0, 100, 100], []),                     # no baseline while the mean volume is 0
    ([100, 100, 5000], []),                        # not enough history yet
])
def test_volume_spike(volumes: list[int], expected: list[int]) -> None:
    cfg = AlertConfig(cooldown_bars=0, volume_window=3)
    assert fired([{"volume": v} for v in volumes], cfg, rule="volume_spike") == expected


def test_flat_bands_never_break_out() -> None:
    steps = [{"close": 100.0, "bb_upper": 100.0, "bb_middle": 100.0, "bb_lower": 100.0}] * 10
    assert fired(steps) == []


# --- cooldown and missing inputs ------------------------------------------------------------------

@pytest.mark.parametrize("cooldown, expected", [
    (0, [1, 3, 5, 7, 9]),
    (1, [1, 3, 5, 7, 9]),   # 2 bars apart: outside a 1-bar cooldown
    (2, [1, 5, 9]),         # the crossing at 3 is dropped, not postponed to 4
    (4, [1, 7]),
    (100, [1]),
])
def test_cooldown_per_rule(cooldown: int, expected: list[int]) -> None:
    steps = series("rsi", [65, 75] * 5)  # crosses above 70 at every odd bar
    assert fired(steps, AlertConfig(cooldown_bars=cooldown), rule="rsi_overbought") == expected


def test_cooldown_is_per_rule() -> None:
    steps = [{"rsi": 75, "volatility": 0.001}, {"rsi": 65, "volatility": 0.001},
             {"rsi": 75, "volatility": 0.001}, {"rsi": 65, "volatility": 0.01}]
    state, got = AlertState(AlertConfig(cooldown_bars=10)), []
    for i, s in enumerate(steps):
        got += [(i, a.rule) for a in state.update(bar(i), values(**s))]
    assert got == [(2, "rsi_overbought"), (3, "volatility_high")]  # rsi's cooldown leaves vol alone
    steps = series("rsi", [65, 75]) + [{"rsi": 75, "volatility": 0.001}, {"rsi": 75, "volatility": 0.01}]
    assert fired(steps, AlertConfig(cooldown_bars=10)) == [1, 3]


def test_cooldown_is_per_symbol() -> None:
    a, b = AlertState(AlertConfig(cooldown_bars=10)), AlertState(AlertConfig(cooldown_bars=10))
    out = []
    for i, rsi in enumerate([65, 75, 65, 75]):
        out += [(al.symbol, i) for al in a.update(bar(i, symbol="AAA"), values(rsi=rsi))]
        if i >= 2:
            out += [(al.symbol, i) for al in b.update(bar(i, symbol="BBB"), values(rsi=rsi))]
    assert out == [("AAA", 1), ("BBB", 3)]


@pytest.mark.parametrize("rsis, expected", [
    ([65, None, 75], [2]),               # a gated / missing value keeps the previous state
    ([75, None, 65, None, 75], [4]),
    ([65, None, None, None, 75, None, 76], [4]),
    ([None, None, 75], []),
])
def test_missing_values_are_not_evaluated(rsis: list, expected: list[int]) -> None:
    assert fired(series("rsi", rsis), rule="rsi_overbought") == expected


# --- output --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, steps, message, value, threshold", [
    ("rsi_overbought", series("rsi", [65, 71.34]), "AAPL RSI 71.3 crossed above 70", 71.34, 70.0),
    ("rsi_oversold", series("rsi", [35, 28.96]), "AAPL RSI 29.0 crossed below 30", 28.96, 30.0),
    ("volatility_high", series("volatility", [0.001, 0.0062]),
     "AAPL volatility 0.62% per bar rose above 0.50%", 0.0062, 0.005),
    ("price_change", series("close", [187.0, 187.32, 182.0]),
     "AAPL close 182.00 moved -2.84% in one bar (threshold ±2.00%)", 182.0 / 187.32 - 1, 0.02),
    ("macd_cross_up", [{"macd": 0.1, "macd_signal": 0.2}, {"macd": 0.1234, "macd_signal": 0.11}],
     "AAPL MACD 0.1234 crossed above its signal line 0.11", 0.1234, 0.11),
    ("macd_cross_down", [{"macd": 0.3, "macd_signal": 0.2}, {"macd": -0.05, "macd_signal": 0.01}],
     "AAPL MACD -0.05 crossed below its signal line 0.01", -0.05, 0.01),
    ("bollinger_breakout_up", [{"close": 100.0, "bb_upper": 101.0}, {"close": 190.12, "bb_upper": 189.8}],
     "AAPL close 190.12 broke above the upper Bollinger band 189.80", 190.12, 189.8),
    ("bollinger_breakout_down", [{"close": 1.0, "bb_lower": 0.5}, {"close": 0.00012, "bb_lower": 0.000125}],
     "AAPL close 0.00012 broke below the lower Bollinger band 0.000125", 0.00012, 0.000125),
])
def test_alert_fields_and_message(rule, steps, message, value, threshold) -> None:
    state = AlertState(NO_COOLDOWN)
    alerts = []
    for i, s in enumerate(steps):
        s = dict(s)
        alerts = [a for a in state.update(bar(i, s.pop("close", 100.0)), values(**s)) if a.rule == rule]
    (alert,) = alerts
    assert alert.message == message
    assert alert.value == pytest.approx(value, rel=1e-15) and alert.threshold == threshold
    assert (alert.symbol, alert.interval, alert.ts) == ("AAPL", "1m", T0 + timedelta(minutes=len(steps) - 1))
    assert alert.id == alert_id("AAPL", "1m", alert.ts, rule)


def test_volume_message() -> None:
    state = AlertState(AlertConfig(volume_window=2))
    for i in range(3):
        state.update(bar(i, volume=1000), values())
    (alert,) = state.update(bar(3, volume=4_200), values())
    assert alert.message == "AAPL volume 4,200 is 4.2x its 2-bar average (threshold 3x)"
    assert (alert.value, alert.threshold) == (4.2, 3.0)


def test_indicators_message_is_accepted() -> None:
    state = AlertState(NO_COOLDOWN)
    for i, rsi in enumerate([60.0, 80.0]):
        msg = Indicators(symbol="AAPL", interval="1m", ts=T0 + timedelta(minutes=i), close=100.0, rsi=rsi)
        alerts = state.update(bar(i), msg)
    assert [a.rule for a in alerts] == ["rsi_overbought"]


def test_only_configured_rules_run() -> None:
    steps = [{"rsi": 50, "volatility": 0.001}, {"rsi": 80, "volatility": 0.01}]
    state = AlertState(AlertConfig(rules=("volatility_high",)))
    got = [a.rule for i, s in enumerate(steps) for a in state.update(bar(i), values(**s))]
    assert got == ["volatility_high"]


@pytest.mark.parametrize("kwargs", [
    {"rsi_overbought": 30, "rsi_oversold": 70}, {"rsi_overbought": 100}, {"rsi_oversold": 0},
    {"volatility_threshold": 0}, {"price_change_threshold": -0.01}, {"volume_change_threshold": float("nan")},
    {"volume_window": 0}, {"cooldown_bars": -1}, {"cooldown_bars": 1.5}, {"rules": ("rsi_high",)},
])
def test_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError):
        AlertConfig(**kwargs)


# --- with the real engine; replay --------------------------------------------------------------------

def engine_run(closes, volumes, config: AlertConfig) -> list:
    ind, al, out = IndicatorState(), AlertState(config), []
    for i, (c, v) in enumerate(zip(closes, volumes)):
        out += al.update(bar(i, float(c), int(v)), ind.update(float(c)))
    return out


def test_rsi_alerts_match_talib_crossings() -> None:
    # Golden: TA-Lib's RSI on the same closes crosses 70 upward exactly at these bars.
    rng = np.random.default_rng(5)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000)))
    rsi = talib.RSI(closes, 14)
    starts = [i for i in range(1, len(rsi)) if rsi[i - 1] <= 70 < rsi[i] and not np.isnan(rsi[i - 1])]
    alerts = engine_run(closes, [1000] * len(closes), NO_COOLDOWN)
    got = [a for a in alerts if a.rule == "rsi_overbought"]
    assert [int((a.ts - T0) / timedelta(minutes=1)) for a in got] == starts
    assert len(starts) > 10
    assert all(a.value == pytest.approx(rsi[int((a.ts - T0) / timedelta(minutes=1))], rel=1e-12) for a in got)


def test_replay_gives_identical_alerts_and_ids() -> None:
    rng = np.random.default_rng(6)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 2000)))
    closes[[500, 1200, 1700]] *= 1.05  # one-bar spikes for price_change
    volumes = rng.integers(500, 1500, 2000) * np.where(rng.random(2000) < 0.02, 8, 1)
    first = engine_run(closes, volumes, AlertConfig())
    again = engine_run(closes, volumes, AlertConfig())
    assert first == again and len({a.id for a in first}) == len(first)
    assert {a.rule for a in first} == set(RULES)  # the series exercises every rule


@st.composite
def rule_inputs(draw):
    n = draw(st.integers(1, 60))
    level = st.one_of(st.none(), st.sampled_from([20.0, 29.9, 30.0, 50.0, 70.0, 70.1, 90.0]))
    return [draw(level) for _ in range(n)], draw(st.integers(0, 6))


@settings(max_examples=300, deadline=None)
@given(rule_inputs())
def test_fires_exactly_at_starts_outside_cooldown(inputs) -> None:
    """Plain restatement of the firing rule on RSI, checked against the state machine."""
    rsis, cooldown = inputs
    expected, previous, last = [], None, None
    for i, rsi in enumerate(rsis):
        if rsi is None:
            continue
        holds = rsi > 70
        if holds and previous is False and (last is None or i - last > cooldown):
            expected.append(i)
            last = i
        previous = holds
    assert fired(series("rsi", rsis), AlertConfig(cooldown_bars=cooldown), rule="rsi_overbought") == expected


@settings(max_examples=100, deadline=None)
@given(rule_inputs(), st.integers(0, 60))
def test_replay_from_start_continues_identically(inputs, cut) -> None:
    rsis, cooldown = inputs
    cfg = AlertConfig(cooldown_bars=cooldown)
    cut = min(cut, len(rsis))
    straight, rebuilt = AlertState(cfg), AlertState(cfg)
    full = [straight.update(bar(i), values(rsi=r)) for i, r in enumerate(rsis)]
    for i, r in enumerate(rsis[:cut]):
        rebuilt.update(bar(i), values(rsi=r))
    assert [rebuilt.update(bar(i), values(rsi=r)) for i, r in enumerate(rsis) if i >= cut] == full[cut:]
