"""The C kernel's exact arithmetic against Python's own (the rest of the kernel is compared
with the scalar path bit for bit in test_processor.py)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from stockpipe.analytics import _kernel


def test_exact_sum_is_math_fsum() -> None:
    rng = random.Random(1)
    for _ in range(20_000):
        xs = [rng.choice((1, -1)) * rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(rng.randint(1, 60))]
        if rng.random() < 0.3:
            xs += [-x for x in xs[: len(xs) // 2]]  # cancellation
        if rng.random() < 0.2:
            xs = [1e16, 1.0, -1e16, 1.0, 2.0 ** -60] + xs  # partials across many exponents
        assert _kernel.fsum(np.array(xs)) == math.fsum(xs), xs


def test_volume_baseline_is_pythons_int_division() -> None:
    # The kernel's 128-bit sum / window, correctly rounded as Python's int / int, including
    # sums past 2**53 (MAX_VOLUME x window) and exact ties between two doubles.
    rng = random.Random(2)
    cases = [(0, 1), (1, 3), (2**53 + 1, 1), (2**53 + 3, 2), (10**15 * 20, 20), (2**125 - 1, 2**63 - 1)]
    for _ in range(200_000):
        w = rng.choice((1, 2, 3, 7, 20, rng.randint(1, 10**6), rng.randint(1, 2**63 - 1), 2 ** rng.randint(0, 62)))
        cases.append((rng.randint(0, 2 ** rng.randint(1, 125)), w))
    for _ in range(50_000):  # halfway between two doubles: round half to even
        w = rng.choice((2, 3, 4, 6, 20))
        cases.append(((2 * rng.randint(2**52, 2**53) + 1) * 2 ** rng.randint(0, 60) * w // 2, w))
    wrong = [(s, w) for s, w in cases if _kernel.divide(s, w) != s / w]
    assert not wrong, wrong[:5]


def test_bad_buffers_raise_instead_of_writing_out_of_bounds() -> None:
    from stockpipe.analytics.indicators.columns import IndicatorColumns

    c = IndicatorColumns(capacity=2)
    with pytest.raises(IndexError):
        c.update(np.array([5]), np.array([1.0]))
    with pytest.raises(ValueError):
        c.update(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError):
        c.update(np.array([0]), np.array([1.0]), out=np.empty((1, 11)))


@pytest.mark.parametrize("gated", [False, True])
def test_one_bar_step_is_the_scalar_path_bit_for_bit(gated: bool) -> None:
    from stockpipe.analytics.indicators import IndicatorConfig, IndicatorState
    from stockpipe.analytics.indicators.columns import IndicatorColumns

    cfg = IndicatorConfig(rsi_frequency=3, volatility_frequency=2) if gated else IndicatorConfig()
    rng = random.Random(3)
    price, closes = 100.0, []
    for _ in range(5000):
        u = rng.random()
        price = price * 100 if u < 0.005 else price / 100 if u < 0.01 else price if u < 0.1 else price * math.exp(rng.gauss(0, 0.01))
        closes.append(price)
    scalar, warm = IndicatorState(cfg), IndicatorState(cfg)
    for c in closes[:cfg.warmup_bars]:
        scalar.update(c)
        warm.update(c)
    columns = IndicatorColumns(cfg, capacity=3)
    col = columns.add(warm)
    for c in closes[cfg.warmup_bars:]:
        want = scalar.update(c)
        got = columns.step(col, c)
        assert [None if v is None else v.hex() for v in got] == [None if v is None else v.hex() for v in want]


def test_exact_sum_with_partials_across_the_whole_exponent_range() -> None:
    # One power of two per exponent: every one stays a partial of its own (2,000+ of them).
    # (The kernel's first version kept 128 on the stack and wrote past them here: undefined
    # behaviour that happened to give the right sum, so this checks the result, not the bound.)
    xs = [2.0**e for e in range(-1074, 1023)]  # their sum stays finite
    rng = random.Random(4)
    rng.shuffle(xs)
    assert _kernel.fsum(np.array(xs)) == math.fsum(xs)
    assert _kernel.fsum(np.array(xs + [-x for x in xs])) == 0.0


def test_closes_outside_the_domain_change_no_column() -> None:
    from stockpipe.analytics.indicators.columns import IndicatorColumns

    c = IndicatorColumns(capacity=2)
    col = c.new()
    before = (c.st.copy(), c.ix.copy())
    for bad in (math.nan, math.inf, 0.0, -1.0, 1e101):
        with pytest.raises(ValueError):
            c.update(np.array([col, col]), np.array([1.0, bad]))
        with pytest.raises(ValueError):
            c.step(col, bad)
    assert (c.st == before[0]).all() and (c.ix == before[1]).all()
