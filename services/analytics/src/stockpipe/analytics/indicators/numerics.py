"""The arithmetic every indicator shares, and the numeric domain of a close.

Numerics (measured; see tests/unit/analytics/test_indicators.py):

- EMA, RSI and MACD repeat TA-Lib's floating-point operations in TA-Lib's order. RSI is
  bit-identical to the installed TA-Lib. The EMA step differs from it by at most an ulp
  now and then: that TA-Lib build computes ``(close - ema) * k + ema`` with one fused
  multiply-add (found by reproducing it bit for bit with an exact FMA), which Python 3.11
  cannot express cheaply; Python never contracts, so our values are the same on every
  machine while TA-Lib's depend on its compiler flags. Measured gap: < 1e-15 relative.
- Window sums (SMA, the Bollinger middle, the mean log return) are TA-Lib's running
  sums, in TA-Lib's order (so bit-identical to it until the first recompute), but every
  ``RECOMPUTE_EVERY`` (128) bars each is recomputed exactly (``math.fsum`` over its ring).
  A running sum never recomputed drifts: TA-Lib's own SMA is 4e-9 off after a 1e8 -> 1
  price drop, and wanders by ~1e-14 on 100k bars of a random walk; ours stays within
  ~2 * 128 * 2**-53 * (max/min close within 256 bars) relative, i.e. 3e-12 even across a
  x100 or /100 jump. Recomputing every bar would cost ~0.5 us; every 128 bars costs ~30 ns.
- Window variances use the sliding-window Welford update of the sum of squared
  deviations, M2 += (x - old) * ((x - mean) + (old - mean_prev)), never sum(x^2) - n*mean^2
  (that cancels catastrophically: flat prices at 1e6 would show a band width of ~0.01).
  M2 is recomputed exactly (two-pass, fsum) with the sums every 128 bars, and also as soon
  as it falls below 2**-10 of its peak since the last recompute: the rounding left over
  from a large value that has since left the window (a jump, a huge return) is then
  removed, so a flat run after a jump gives exactly zero volatility and bands that close
  on the middle, as TA-Lib does.
- Measured gaps to TA-Lib (relative, worst over the golden series and 100k bars): RSI 0
  (bit-identical), EMA 4e-16, MACD 1e-13, SMA 6e-13, volatility 2e-11. One real
  deviation: after a x100 jump has left the window, TA-Lib's STDDEV/BBANDS still carry
  its rounding in their running sums of squares for ever: its standard deviation is then
  up to 1.7e-7 off the exact value and its bands 2.8e-9, above the 1e-9 contract; ours
  are within 1e-13 of the exact values there (and its SMA 7e-12 off, ours 3e-14).
- Exactness vs. cost: Python integers (exact sums of ``close * 2**96``) were measured too:
  exact to the last bit and window-only, but 2.0-2.2 us per bar for the set against
  ~1.6 us here, above the 2 us budget, for a gain (1e-15) far below the 1e-9 contract.

Domain. A close must lie in :data:`CLOSE_DOMAIN`, 1e-100 .. 1e100. Within it every
intermediate stays finite with room to spare: a ratio of two closes lies in 1e-200 .. 1e200
(a normal float, so ``log`` never sees 0 or infinity) and a log return within +/-461;
squares of price differences stay below 1e201, and their sums over the longest window
(100,000 bars) below 1e206; Wilder sums and EMAs are bounded by the closes. So no update
raises and no value is NaN or infinite, whatever the order of closes. The decoder's
``PRICE_RANGE`` (1e-8 .. 1e9) lies well inside, so every decoded bar is in the domain.
"""

from __future__ import annotations

from math import fsum

__all__ = ["CLOSE_DOMAIN", "RECOMPUTE_EVERY"]


# Every window sum and M2 is recomputed exactly on bars whose count (1-based) is a multiple
# of this: it bounds the rounding a running sum can gather to 128 steps. A power of two so
# the hot path tests it with one bit-and; 128 keeps the amortised cost near 30 ns per bar.
RECOMPUTE_EVERY = 128
_RECOMPUTE_MASK = RECOMPUTE_EVERY - 1
# M2 is also recomputed when it falls below this fraction of its peak since the last
# recompute. Each update adds an error of at most ~5 ulp of the peak, so over 128 steps
# M2 keeps a relative error <= 5 * 128 * 2**-53 * 2**10 ~ 7e-11 (std: half of that).
_M2_DROP = 2.0**-10
CLOSE_DOMAIN = (1e-100, 1e100)
_CMIN, _CMAX = CLOSE_DOMAIN


def _check_period(name: str, value: int, minimum: int = 2) -> None:
    # TA-Lib's own ranges: 2..100000 for every period here (1..100000 for the MACD signal).
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 100_000:
        raise ValueError(f"{name} must be an integer in [{minimum}, 100000], got {value!r}")



def _check_close(close: float) -> None:
    if not _CMIN <= close <= _CMAX:  # also rejects NaN
        raise ValueError(f"close must be a number in {_CMIN:g}..{_CMAX:g}, got {close!r}")

def _k(period: int) -> float:
    """TA-Lib's PER_TO_K: the EMA smoothing factor."""
    return 2.0 / (period + 1)


def _tail(ring: list[float], last: int, k: int) -> list[float]:
    """The k values of a ring buffer ending at index ``last`` (negative indices wrap)."""
    return [ring[j] for j in range(last - k + 1, last + 1)]


def _m2(values: list[float]) -> float:
    """Sum of squared deviations from the mean: two passes, exact sums, shifted by a pivot.

    The shift (exact by Sterbenz for values within a factor 2 of the pivot) makes a flat
    window give exactly 0, where fsum(n * x) / n need not round back to x. The pivot is the
    minimum, so the result depends on the values only, not on their order in a ring.
    """
    pivot = min(values)
    shifted = [v - pivot for v in values]
    mean = fsum(shifted) / len(shifted)
    return fsum([(d - mean) * (d - mean) for d in shifted])


class _Window:
    """Running mean (and optionally M2) of the last ``period`` values; see the module doc.

    ``partial`` is TA-Lib's running sum of the last period-1 values; ``push`` adds the new
    value, returns the window mean (``None`` until full) and drops the oldest value.
    """

    __slots__ = ("_hi", "_lo", "_moments", "_partial", "_pos", "_ring", "count", "m2", "mean", "period")

    def __init__(self, period: int, moments: bool) -> None:
        self.period = period
        self._ring = [0.0] * period  # zeros: subtracting them is exact, so warm-up needs no branch
        self._pos = 0
        self.count = 0
        self._partial = 0.0
        self._moments = moments
        self.mean = 0.0
        self.m2 = 0.0
        self._hi = 0.0
        self._lo = 0.0

    def push(self, value: float, refresh: bool) -> float | None:
        p = self.period
        ring, pos = self._ring, self._pos
        old = ring[pos]            # the value leaving the window (0.0 until it is full)
        ring[pos] = value
        pos = self._pos = 0 if pos + 1 == p else pos + 1
        total = self._partial + value
        mean = total / p
        self._partial = total - ring[pos]   # ring[pos] is now the window's oldest value
        self.count += 1
        if self._moments:
            if self.count > p:
                m2 = self.m2 + (value - old) * ((value - mean) + (old - self.mean))
                if m2 > self._hi:
                    self._hi, self._lo = m2, m2 * _M2_DROP
                    self.m2 = m2
                elif m2 < self._lo:
                    self._exact_m2()
                else:
                    self.m2 = m2
            elif self.count == p:
                self._exact_m2()
        if refresh:
            self._partial = fsum(_tail(ring, pos - 1, p - 1))
            if self._moments and self.count >= p:
                self._exact_m2()
        self.mean = mean
        return mean if self.count >= p else None

    def _exact_m2(self) -> None:
        self.m2 = m2 = _m2(self._ring)
        self._hi, self._lo = m2, m2 * _M2_DROP

    def variance(self) -> float:
        """Population variance of the window (>= 0)."""
        m2 = self.m2
        return m2 / self.period if m2 > 0.0 else 0.0
