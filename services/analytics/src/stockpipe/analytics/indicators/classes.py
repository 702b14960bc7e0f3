"""One small class per indicator, each ``update(close) -> value | None`` (TA-Lib's definitions).

The conventions and numerics are the package's (:mod:`stockpipe.analytics.indicators`);
:class:`~stockpipe.analytics.indicators.state.IndicatorState` fuses these into one update and
is bit-identical to them.
"""

from __future__ import annotations

import math
from math import log, sqrt
from typing import NamedTuple

from stockpipe.analytics.indicators.numerics import (
    _RECOMPUTE_MASK,
    _check_close,
    _check_period,
    _k,
    _Window,
)

__all__ = ["EMA", "MACD", "RSI", "SMA", "Bollinger", "BollingerValue", "MacdValue", "Volatility"]


class BollingerValue(NamedTuple):
    """Bollinger bands of one bar, in price units.

    A NamedTuple rather than a frozen dataclass: as immutable and typed, and three times
    cheaper to build (a frozen dataclass ``__init__`` goes through ``object.__setattr__``).
    """

    lower: float
    middle: float
    upper: float


class MacdValue(NamedTuple):
    """MACD line, its signal line and their difference (histogram), in price units."""

    macd: float
    signal: float
    hist: float


class SMA:
    """Simple moving average of the last ``period`` closes (TA-Lib SMA)."""

    __slots__ = ("_w", "period")

    def __init__(self, period: int = 20) -> None:
        _check_period("period", period)
        self.period = period
        self._w = _Window(period, moments=False)

    def update(self, close: float) -> float | None:
        _check_close(close)
        w = self._w
        return w.push(close, refresh=not (w.count + 1) & _RECOMPUTE_MASK)


class EMA:
    """Exponential moving average, TA-Lib EMA: seeded by the mean of the first ``period`` values."""

    __slots__ = ("_acc", "_count", "_k", "_value", "period")

    def __init__(self, period: int = 20) -> None:
        _check_period("period", period)
        self.period = period
        self._k = _k(period)
        self._count = 0
        self._acc = 0.0
        self._value: float | None = None

    def update(self, value: float) -> float | None:
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        prev = self._value
        if prev is not None:
            self._value = (value - prev) * self._k + prev
        else:
            # TA-Lib sums the seed window left to right, then divides once.
            self._acc += value
            self._count += 1
            if self._count == self.period:
                self._value = self._acc / self.period
        return self._value


class RSI:
    """Relative strength index with Wilder smoothing, TA-Lib RSI (0..100)."""

    __slots__ = ("_count", "_gain", "_loss", "_prev", "period")

    def __init__(self, period: int = 14) -> None:
        _check_period("period", period)
        self.period = period
        self._count = 0
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, close: float) -> float | None:
        _check_close(close)
        n = self.period
        count = self._count
        self._count = count + 1
        if count == 0:
            self._prev = close
            return None
        change = close - self._prev
        self._prev = close
        gain, loss = self._gain, self._loss
        if count > n:  # Wilder smoothing, in TA-Lib's order of operations
            gain *= n - 1
            loss *= n - 1
        if change < 0:
            loss -= change
        else:
            gain += change
        if count < n:  # still summing the first n changes
            self._gain, self._loss = gain, loss
            return None
        # TA-Lib multiplies by 1/n rather than dividing: bit-identical this way (measured).
        gain *= 1.0 / n
        loss *= 1.0 / n
        self._gain, self._loss = gain, loss
        total = gain + loss
        return 100.0 * (gain / total) if total != 0.0 else 0.0


class Bollinger:
    """Bollinger bands, TA-Lib BBANDS(matype=0): SMA +/- ``std_dev`` population std devs."""

    __slots__ = ("_w", "period", "std_dev")

    def __init__(self, period: int = 20, std_dev: float = 2.0) -> None:
        _check_period("period", period)
        if not 0 < std_dev <= 1000:  # as IndicatorConfig.bollinger_std: finite bands
            raise ValueError(f"std_dev must be a number in (0, 1000], got {std_dev!r}")
        self.period = period
        self.std_dev = float(std_dev)
        self._w = _Window(period, moments=True)

    def update(self, close: float) -> BollingerValue | None:
        _check_close(close)
        w = self._w
        middle = w.push(close, refresh=not (w.count + 1) & _RECOMPUTE_MASK)
        if middle is None:
            return None
        width = sqrt(w.variance()) * self.std_dev
        return BollingerValue(middle - width, middle, middle + width)


class MACD:
    """Moving average convergence/divergence exactly as TA-Lib's MACD (see module doc)."""

    __slots__ = (
        "_acc_fast",
        "_acc_sig",
        "_count",
        "_fast",
        "_kf",
        "_kg",
        "_sig",
        "_slow",
        "fast",
        "signal",
        "slow",
    )

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        _check_period("fast", fast)
        _check_period("slow", slow)
        _check_period("signal", signal, minimum=1)
        if fast >= slow:  # TA-Lib silently swaps them; a config mistake is better reported
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self.fast, self.slow, self.signal = fast, slow, signal
        self._kf, self._kg = _k(fast), _k(signal)
        self._count = 0
        self._slow = EMA(slow)
        self._fast: float | None = None
        self._sig: float | None = None
        self._acc_fast = 0.0
        self._acc_sig = 0.0

    def update(self, close: float) -> MacdValue | None:
        _check_close(close)
        i = self._count  # index of this bar
        self._count = i + 1
        slow = self._slow.update(close)
        fast = self._fast
        if fast is not None:
            fast = (close - fast) * self._kf + fast
        elif i >= self.slow - self.fast:
            # TA-Lib seeds the fast EMA on the `fast` bars that end where the slow seed ends.
            self._acc_fast += close
            if i == self.slow - 1:
                fast = self._acc_fast / self.fast
        self._fast = fast
        if slow is None or fast is None:
            return None
        macd = fast - slow
        sig = self._sig
        if sig is not None:
            sig = (macd - sig) * self._kg + sig
        else:
            self._acc_sig += macd
            if i == self.slow + self.signal - 2:
                sig = self._acc_sig / self.signal
        self._sig = sig
        if sig is None:
            return None
        return MacdValue(macd, sig, macd - sig)


class Volatility:
    """Population standard deviation of the last ``period`` log returns ln(c[t]/c[t-1]).

    TA-Lib ``STDDEV(LN(ROCR(close, 1)), period, 1)``: per bar, dimensionless, not annualised.
    """

    __slots__ = ("_count", "_prev", "_w", "period")

    def __init__(self, period: int = 20) -> None:
        _check_period("period", period)
        self.period = period
        self._w = _Window(period, moments=True)
        self._prev = 0.0
        self._count = 0

    def update(self, close: float) -> float | None:
        _check_close(close)
        prev = self._prev
        self._prev = close
        self._count += 1
        if self._count == 1:
            return None
        # Recompute on the same bars (counted in closes) as IndicatorState does.
        mean = self._w.push(log(close / prev), refresh=not self._count & _RECOMPUTE_MASK)
        return None if mean is None else sqrt(self._w.variance())
