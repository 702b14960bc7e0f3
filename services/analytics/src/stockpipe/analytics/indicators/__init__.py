"""Incremental technical indicators with TA-Lib's definitions, O(1) work per bar.

- :mod:`.numerics`: the shared arithmetic (window sums and variances, exact recomputes) and
  the numeric domain of a close;
- :mod:`.classes`: one small class per indicator (:class:`SMA`, :class:`EMA`, :class:`RSI`,
  :class:`Bollinger`, :class:`MACD`, :class:`Volatility`), each with
  ``update(close) -> value | None``;
- :mod:`.state`: :class:`IndicatorConfig` and :class:`IndicatorState`, one symbol's whole set
  fused into one lean ``update`` that returns the 12 values in
  :data:`stockpipe.common.messages.INDICATOR_FIELDS` order (the pure-Python reference the
  kernel is tested against, bit for bit);
- :mod:`.columns`: :class:`~.columns.IndicatorColumns`, the states of many series, one column
  each, advanced by the C kernel (:mod:`stockpipe.analytics._kernel`) for any sequence of
  bars in order, warm-up included, bit-identical to IndicatorState (what the analytics
  service runs, through :class:`stockpipe.analytics.processor.Processor`; ``step`` is the
  per-bar path for one series);
- :mod:`.batch`: :class:`IndicatorBatch`, many symbols in lockstep with numpy, bit-identical to
  IndicatorState (backfills, the benchmark and the tests).

Memory is bounded by the longest window (fixed-size ring buffers; nothing grows with the
series).

Conventions. TA-Lib's Function API with default settings is the reference, and the tests
check every line below against ``talib`` on random walks and adversarial series.

- Input: closes in price units within :data:`CLOSE_DOMAIN` (1e-100 .. 1e100). Anything else
  (NaN, infinities, zero, negatives, absurd magnitudes) raises ``ValueError`` and leaves the
  state as it was. Within the domain nothing raises and every value is finite (numerics).
  The decoder admits far less (``PRICE_RANGE``, 1e-8 .. 1e9), so a decoded bar never raises. Bar ``i`` is the ``i``-th close fed (0-based). ``None`` means
  "still warming up", exactly where TA-Lib's batch output is NaN.
- SMA(n): mean of the last n closes; first value at bar n-1.
- EMA(n): ``k = 2 / (n + 1)``, ``ema = (close - ema) * k + ema``, seeded with the plain mean
  of the first n closes (TA-Lib's default compatibility, not Metastock's); first at bar n-1.
- RSI(n): Wilder smoothing as TA-Lib's RSI: the first average gain/loss is the mean of the
  first n close-to-close changes, then ``avg = (avg * (n - 1) + change) * (1 / n)``;
  ``rsi = 100 * gain / (gain + loss)`` in 0..100, and 0 when both are 0 (flat prices;
  TA-Lib's choice, kept). First value at bar n.
- Bollinger(n, k): middle = SMA(n); upper/lower = middle +/- k * *population* standard
  deviation (divide by n; TA-Lib BBANDS with matype=0). First value at bar n-1.
- MACD(fast, slow, signal) exactly as TA-Lib's MACD: the slow EMA is seeded on bars
  0..slow-1 but the fast EMA on bars slow-fast..slow-1, so both start at bar slow-1 (this
  is *not* EMA(fast) - EMA(slow) with both seeded at bar 0). macd = fast - slow;
  signal = EMA(signal) of macd seeded by the mean of its first ``signal`` values;
  hist = macd - signal. All three are first reported at bar slow + signal - 2 (33 for
  12/26/9), as TA-Lib does. Price units.
- Volatility(n): population standard deviation of the last n log returns
  ``ln(close[t] / close[t-1])``, i.e. TA-Lib ``STDDEV(LN(ROCR(close, 1)), n, 1)``.
  Per bar and dimensionless (0.01 = 1 % per bar); NOT annualised (multiply by
  sqrt(bars per year) for that). First value at bar n (n returns need n+1 closes).

Rebuilding. The state is a deterministic function of the closes fed since it was created:
feeding the same closes from the same first bar gives the same bits, on any machine
(``math.fsum`` is correctly rounded, nothing depends on the platform's libm but ``log``).
EMA, RSI and MACD have infinite memory (seeded at the series start), so an exact rebuild
replays from the first bar of the series. Replaying only the last N bars gives window
values equal to ~1e-14 relative (the recompute phase differs) and EMA-based values that
converge as ``(1 - k)^N`` (EMA26 and Wilder RSI14 agree to ~1e-9 after about 300 bars).
"""

from stockpipe.analytics.indicators.batch import IndicatorBatch
from stockpipe.analytics.indicators.classes import (
    EMA,
    MACD,
    RSI,
    SMA,
    Bollinger,
    BollingerValue,
    MacdValue,
    Volatility,
)
from stockpipe.analytics.indicators.numerics import CLOSE_DOMAIN, RECOMPUTE_EVERY
from stockpipe.analytics.indicators.state import IndicatorConfig, IndicatorState, IndicatorValues

__all__ = [
    "CLOSE_DOMAIN",
    "EMA",
    "MACD",
    "RECOMPUTE_EVERY",
    "RSI",
    "SMA",
    "Bollinger",
    "BollingerValue",
    "IndicatorBatch",
    "IndicatorConfig",
    "IndicatorState",
    "IndicatorValues",
    "MacdValue",
    "Volatility",
]
