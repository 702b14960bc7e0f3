"""Many symbols' indicator sets advanced together with numpy (benchmarks, backfills, tests)."""

from __future__ import annotations

from math import fsum, log

from stockpipe.analytics.indicators.numerics import _CMAX, _CMIN, _M2_DROP, _RECOMPUTE_MASK, _k, _m2
from stockpipe.analytics.indicators.state import IndicatorConfig

__all__ = ["IndicatorBatch"]


class IndicatorBatch:
    """Many symbols' indicator sets advanced together, one numpy operation per step.

    ``update(closes)`` takes one close per symbol (a float array of shape ``(symbols,)``,
    every symbol's next bar) and returns a ``(symbols, 12)`` float array in
    ``INDICATOR_FIELDS`` order with NaN where :class:`IndicatorState` gives ``None``.
    The symbols move in lockstep (same bar count), which is what a backfill or a replay of
    aligned bars gives; a live consumer whose symbols arrive unevenly uses IndicatorState.

    Results are bit-identical to one :class:`IndicatorState` per symbol: the same IEEE
    operations in the same order, elementwise (numpy's + - * / and sqrt round exactly
    like Python's), the same exact recomputes (``math.fsum`` per symbol, every
    ``RECOMPUTE_EVERY`` bars and on an M2 collapse), and, with ``exact_log=True`` (the
    default), log returns from ``math.log``. numpy's own ``np.log`` is faster but rounds
    differently from the C library's ``log`` in ~5 % of cases (by one ulp; measured on this
    AVX-512 build), so ``exact_log=False`` trades identity for speed: volatility then
    differs from IndicatorState by ~1e-16 relative.

    State is stacked so that one numpy call serves several indicators: the four EMAs fed
    closes (ema short, ema long, macd slow, macd fast) are one (4, S) array, the four
    running sums one (4, S) array, the two M2s (bollinger, volatility) one (2, S) array.
    """

    def __init__(self, symbols: int, config: IndicatorConfig | None = None, *, exact_log: bool = True) -> None:
        import numpy as np  # imported here: importing the package stays light for what needs only IndicatorState

        if not isinstance(symbols, int) or isinstance(symbols, bool) or symbols < 1:
            raise ValueError(f"symbols must be a positive integer, got {symbols!r}")
        self._np = np
        cfg = config if config is not None else IndicatorConfig()
        self.config = cfg
        self.symbols = symbols
        self.exact_log = exact_log
        self.count = 0
        self._width = max(cfg.sma_short, cfg.sma_long, cfg.bollinger_period)
        self._ring = np.zeros((self._width, symbols))             # closes
        self._rring = np.zeros((cfg.volatility_period, symbols))  # log returns
        self._pos = self._rpos = 0
        self._prev = np.zeros(symbols)
        self._sums = np.zeros((4, symbols))   # TA-Lib running sums: sma short, sma long, bb, returns
        self._m2 = np.zeros((2, symbols))     # M2: bollinger, volatility
        self._hi = np.zeros((2, symbols))     # M2 peak since the last exact recompute
        self._lo = np.zeros((2, symbols))     # ... and the floor that triggers one
        self._means = np.zeros((2, symbols))  # previous bar's window means (bb, returns)
        self._avg = np.zeros((2, symbols))    # Wilder gain, loss
        self._ema = np.zeros((4, symbols))    # ema short, ema long, macd slow, macd fast (seed sums first)
        self._sig = np.zeros(symbols)
        self._x = np.zeros((4, symbols))      # this bar's inputs of the four sums: c, c, c, r
        periods = (cfg.sma_short, cfg.sma_long, cfg.bollinger_period, cfg.volatility_period)
        self._periods = np.array(periods, dtype=np.float64).reshape(4, 1)
        self._k = np.array([_k(p) for p in (cfg.ema_short, cfg.ema_long, cfg.macd_slow, cfg.macd_fast)]).reshape(4, 1)
        self._last_warm = cfg.warmup_bars - 1
        freqs = cfg.field_frequencies()
        self._freqs = None if all(f == 1 for f in freqs) else np.array(freqs)

    # -- helpers ------------------------------------------------------------------------------------------

    def _window_rows(self, ring, last: int, k: int) -> list[int]:
        return [j % ring.shape[0] for j in range(last - k + 1, last + 1)]

    def _exact_m2(self, row: int, window, columns) -> None:
        """Recompute M2 exactly for some symbols (M2 collapsed, first full window, recompute bar)."""
        m2, hi, lo = self._m2[row], self._hi[row], self._lo[row]
        for s in columns.tolist():
            value = _m2(window[:, s].tolist())
            m2[s] = hi[s] = value
            lo[s] = value * _M2_DROP

    def _fsums(self, ring, last: int, k: int):
        """Exact sums of the k values ending at ring row ``last``, per symbol."""
        np = self._np
        if k == 0:
            return np.zeros(self.symbols)
        return np.array([fsum(col) for col in ring[self._window_rows(ring, last, k)].T.tolist()])

    def _log(self, ratio):
        np = self._np
        if self.exact_log:  # ~70 ns per symbol: the price of bit-identity with IndicatorState
            return np.fromiter(map(log, ratio.tolist()), np.float64, self.symbols)
        return np.log(ratio)

    def _check(self, closes):
        np = self._np
        closes = np.asarray(closes, dtype=np.float64)
        if closes.shape != (self.symbols,):
            raise ValueError(f"expected {self.symbols} closes, got shape {closes.shape}")
        low, high = closes.min(), closes.max()
        if not (_CMIN <= low and high <= _CMAX):  # NaN fails both
            raise ValueError(f"every close must be a number in {_CMIN:g}..{_CMAX:g}")
        return closes

    # -- the complete path: warm-up and recompute bars -------------------------------------------------------

    def update(self, closes) -> object:
        """Feed every symbol's next close; returns the (symbols, 12) array of values."""
        if self.count > self._last_warm and (self.count + 1) & _RECOMPUTE_MASK:
            return self._update_hot(closes)
        np = self._np
        cfg = self.config
        closes = self._check(closes)
        all_symbols = np.arange(self.symbols)
        ps, pl, pb, pv = cfg.sma_short, cfg.sma_long, cfg.bollinger_period, cfg.volatility_period
        i = self.count
        n = i + 1
        refresh = not n & _RECOMPUTE_MASK
        r = self._log(closes / self._prev) if i else None
        out = np.full((12, self.symbols), np.nan)

        ring, pos = self._ring, self._pos
        old = ring[pos - pb].copy()
        ring[pos] = closes
        sums = self._sums
        for row, p, col in ((0, ps, 1), (1, pl, 2), (2, pb, 6)):
            t = sums[row] + closes
            mean = t / p
            if i >= p - 1:
                out[col] = mean
            sums[row] = t - ring[pos - p + 1]
        mid = mean  # the bollinger window's (last in the loop)
        rows_b = self._window_rows(ring, pos, pb)
        if n > pb:
            m2 = self._m2[0] + (closes - old) * ((closes - mid) + (old - self._means[0]))
            up, down = m2 > self._hi[0], m2 < self._lo[0]
            self._hi[0] = np.maximum(self._hi[0], m2)
            self._lo[0] = np.where(up, m2 * _M2_DROP, self._lo[0])
            self._m2[0] = m2
            if down.any():
                self._exact_m2(0, ring[rows_b], np.flatnonzero(down & ~up))
        elif n == pb:
            self._exact_m2(0, ring[rows_b], all_symbols)
        self._means[0] = mid
        if refresh:
            for row, p in ((0, ps), (1, pl), (2, pb)):
                sums[row] = self._fsums(ring, pos, p - 1)
            if n >= pb:
                self._exact_m2(0, ring[rows_b], all_symbols)
        self._pos = 0 if pos + 1 == self._width else pos + 1
        if i >= pb - 1:
            half = np.sqrt(np.maximum(self._m2[0], 0.0) / pb) * float(cfg.bollinger_std)
            out[5], out[7] = mid + half, mid - half

        if i:
            rring, rpos = self._rring, self._rpos
            old = rring[rpos].copy()
            rring[rpos] = r
            t = sums[3] + r
            mean_r = t / pv
            sums[3] = t - rring[rpos - pv + 1]
            if i > pv:
                m2 = self._m2[1] + (r - old) * ((r - mean_r) + (old - self._means[1]))
                up, down = m2 > self._hi[1], m2 < self._lo[1]
                self._hi[1] = np.maximum(self._hi[1], m2)
                self._lo[1] = np.where(up, m2 * _M2_DROP, self._lo[1])
                self._m2[1] = m2
                if down.any():
                    self._exact_m2(1, rring, np.flatnonzero(down & ~up))
            elif i == pv:
                self._exact_m2(1, rring, all_symbols)
            self._means[1] = mean_r
            if refresh:
                sums[3] = self._fsums(rring, rpos, pv - 1)
                if i >= pv:
                    self._exact_m2(1, rring, all_symbols)
            self._rpos = 0 if rpos + 1 == pv else rpos + 1
            if i >= pv:
                out[11] = np.sqrt(np.maximum(self._m2[1], 0.0) / pv)

            pr = cfg.rsi_period
            change = closes - self._prev
            avg = self._avg
            if i > pr:
                avg *= float(pr - 1)
            avg[0] += np.maximum(change, 0.0)  # + 0.0 leaves a value unchanged: same bits
            avg[1] -= np.minimum(change, 0.0)
            if i >= pr:
                avg *= 1.0 / pr
                self._rsi(out[0])

        # EMAs: before seeding, the rows hold the left-to-right seed sums.
        ema = self._ema
        fast, slow, signal_p = cfg.macd_fast, cfg.macd_slow, cfg.macd_signal
        for row, period, start, col in ((0, cfg.ema_short, 0, 3), (1, cfg.ema_long, 0, 4),
                                        (2, slow, 0, None), (3, fast, slow - fast, None)):
            if i >= period + start:
                ema[row] = (closes - ema[row]) * self._k[row, 0] + ema[row]
            elif i >= start:
                ema[row] += closes
                if i == period + start - 1:
                    ema[row] /= period
            if col is not None and i >= period - 1:
                out[col] = ema[row]
        if i >= slow - 1:
            line = ema[3] - ema[2]
            first = slow + signal_p - 2
            if i > first:
                self._sig = (line - self._sig) * _k(signal_p) + self._sig
            else:
                self._sig = self._sig + line
                if i == first:
                    self._sig = self._sig / signal_p
            if i >= first:
                out[8], out[9], out[10] = line, self._sig, line - self._sig

        self._prev = closes.copy()
        self.count = n
        return self._finish(out, n)

    def _rsi(self, dest) -> None:
        np = self._np
        gain, loss = self._avg
        total = gain + loss
        ratio = np.zeros(self.symbols)
        np.divide(gain, total, out=ratio, where=total != 0.0)  # 0 where no gain and no loss
        np.multiply(ratio, 100.0, out=dest)

    def _finish(self, out, n: int):
        if self._freqs is not None:
            out[n % self._freqs != 0] = self._np.nan
        return out.T

    # -- the hot path: every field seeded, not a recompute bar ------------------------------------------------

    def _update_hot(self, closes):
        np = self._np
        cfg = self.config
        closes = self._check(closes)
        pb, pv = cfg.bollinger_period, cfg.volatility_period
        n = self.count + 1
        x = self._x
        x[:3] = closes
        x[3] = self._log(closes / self._prev)
        ring, rring, pos, rpos = self._ring, self._rring, self._pos, self._rpos
        old = np.empty((2, self.symbols))
        old[0] = ring[pos - pb]
        old[1] = rring[rpos]
        ring[pos] = closes
        rring[rpos] = x[3]
        t = self._sums + x
        means = t / self._periods
        oldest = ring[[pos - cfg.sma_short + 1, pos - cfg.sma_long + 1, pos - pb + 1]]
        np.subtract(t[:3], oldest, out=self._sums[:3])
        np.subtract(t[3], rring[rpos - pv + 1], out=self._sums[3])

        value, mean = x[2:4], means[2:4]  # the bollinger and volatility windows, stacked
        m2 = self._m2 + (value - old) * ((value - mean) + (old - self._means))
        up, down = m2 > self._hi, m2 < self._lo
        np.maximum(self._hi, m2, out=self._hi)
        self._lo = np.where(up, m2 * _M2_DROP, self._lo)
        self._m2 = m2
        self._means = mean.copy()
        down &= ~up
        if down[0].any():
            self._exact_m2(0, ring[self._window_rows(ring, pos, pb)], np.flatnonzero(down[0]))
        if down[1].any():
            self._exact_m2(1, rring, np.flatnonzero(down[1]))
        self._pos = 0 if pos + 1 == self._width else pos + 1
        self._rpos = 0 if rpos + 1 == pv else rpos + 1

        out = np.empty((12, self.symbols))
        sd = np.sqrt(np.maximum(self._m2, 0.0) / self._periods[2:4])
        half = sd[0] * float(cfg.bollinger_std)
        mid = means[2]
        out[1:3] = means[0:2]
        np.add(mid, half, out=out[5])
        out[6] = mid
        np.subtract(mid, half, out=out[7])
        out[11] = sd[1]

        change = closes - self._prev
        avg = self._avg
        avg *= float(cfg.rsi_period - 1)
        avg[0] += np.maximum(change, 0.0)
        avg[1] -= np.minimum(change, 0.0)
        avg *= 1.0 / cfg.rsi_period
        self._rsi(out[0])

        ema = self._ema
        step = closes - ema
        step *= self._k
        ema += step  # (close - ema) * k + ema, as IndicatorState
        out[3:5] = ema[0:2]
        line = out[8]
        np.subtract(ema[3], ema[2], out=line)
        sig = (line - self._sig) * _k(cfg.macd_signal) + self._sig
        self._sig = sig
        out[9] = sig
        np.subtract(line, sig, out=out[10])

        self._prev = closes.copy()
        self.count = n
        return self._finish(out, n)
