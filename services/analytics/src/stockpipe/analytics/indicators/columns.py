"""The indicator states of many series, one column each: what the analytics service runs.

A series gets a column (a row of these arrays) from :meth:`IndicatorColumns.new`, or an
:class:`IndicatorState`'s state copied in by :meth:`IndicatorColumns.add`; then
:meth:`IndicatorColumns.update` feeds any sequence of bars of any columns, in order, through
the C kernel (:mod:`stockpipe.analytics._kernel`): a polled batch holds 40 bars of one symbol
and 3 of another, interleaved, and each column advances bar by bar in arrival order.

Bit-identical to :class:`IndicatorState` (the pure-Python reference), warm-up included: its
IEEE operations in the same order, libm's ``log`` for the log returns, and the same exact
recomputes (an exact sum with the result of ``math.fsum``): every ``RECOMPUTE_EVERY`` bars
of a series and when an M2 collapses below its floor. The tests feed random interleavings
of series through both and compare every bit.

Memory: ``max(windows) + volatility_period + 23`` floats and three integers per column
(~720 bytes with the defaults), against ~3 kB for an IndicatorState's lists of Python floats.
"""

from __future__ import annotations

import numpy as np

from stockpipe.analytics import _kernel
from stockpipe.analytics.indicators.numerics import CLOSE_DOMAIN
from stockpipe.analytics.indicators.state import IndicatorConfig, IndicatorState

__all__ = ["IndicatorColumns"]

assert _kernel.CLOSE_DOMAIN == CLOSE_DOMAIN  # the kernel rejects what IndicatorState rejects

# Per column: IndicatorState._st after pos, rpos and n (prev, the sums, M2s, EMAs: 0 where
# _st has None), then its _acc (the EMAs' seed sums).
NSCALARS = 23
_EMAS = slice(13, 18)  # es, el, mf, ms, sig


class IndicatorColumns:
    """Indicator states of many series, one column (array row) each."""

    def __init__(self, config: IndicatorConfig | None = None, capacity: int = 64) -> None:
        cfg = config if config is not None else IndicatorConfig()
        self.config = cfg
        self.width = max(cfg.sma_short, cfg.sma_long, cfg.bollinger_period)
        self.capacity = 0
        self.ring = np.zeros((0, self.width))                 # closes, a ring per column
        self.rring = np.zeros((0, cfg.volatility_period))     # log returns
        self.st = np.zeros((0, NSCALARS))                     # the scalar state
        self.ix = np.zeros((0, 3), dtype=np.int64)            # next ring slot, next rring slot, bars fed
        self._free: list[int] = []
        self._params = (cfg.sma_short, cfg.sma_long, cfg.bollinger_period, cfg.volatility_period,
                        cfg.rsi_period, cfg.ema_short, cfg.ema_long, cfg.macd_fast, cfg.macd_slow,
                        cfg.macd_signal, float(cfg.bollinger_std))
        self._grow(max(1, capacity))
        freqs = cfg.field_frequencies()
        self.freqs = None if all(f == 1 for f in freqs) else np.array(freqs, dtype=np.int64)

    def __len__(self) -> int:
        return self.capacity - len(self._free)

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def widen(a: np.ndarray) -> np.ndarray:
            out = np.zeros((capacity,) + a.shape[1:], dtype=a.dtype)
            out[:old] = a
            return out

        self.ring, self.rring, self.st, self.ix = widen(self.ring), widen(self.rring), widen(self.st), widen(self.ix)
        self._free.extend(range(capacity - 1, old - 1, -1))  # lowest index handed out first
        self.capacity = capacity
        self._kernel = _kernel.Columns(self._params, self.ring, self.rring, self.st, self.ix)

    # -- moving series in and out ------------------------------------------------------------------------------

    def new(self) -> int:
        """A free column holding a new series (no bar yet); return it."""
        if not self._free:
            self._grow(2 * self.capacity)
        col = self._free.pop()
        self.ring[col] = self.rring[col] = self.st[col] = self.ix[col] = 0
        return col

    def add(self, state: IndicatorState) -> int:
        """Copy ``state`` into a free column; return it."""
        if state.config != self.config:
            raise ValueError("the state's config differs from the columns'")
        col = self.new()
        (pos, rpos, n, *scalars) = state._st
        self.ring[col] = state._ring
        self.rring[col] = state._rring
        self.st[col] = [0.0 if v is None else v for v in scalars] + state._acc
        self.ix[col] = pos, rpos, n
        return col

    def remove(self, col: int) -> None:
        """Free a column (its series was dropped)."""
        self._free.append(col)

    def state(self, col: int) -> IndicatorState:
        """The column's state as an :class:`IndicatorState` (tests, debugging)."""
        s = IndicatorState(self.config)
        s._ring = self.ring[col].tolist()
        s._rring = self.rring[col].tolist()
        pos, rpos, n = self.ix[col].tolist()
        scalars = self.st[col].tolist()
        cfg = self.config
        seeded = (n >= cfg.ema_short, n >= cfg.ema_long, n >= cfg.macd_slow, n >= cfg.macd_slow,
                  n >= cfg.macd_slow + cfg.macd_signal - 1)  # es, el, mf, ms, sig
        emas = [v if ok else None for v, ok in zip(scalars[_EMAS], seeded)]
        s._st = (pos, rpos, n, *scalars[:_EMAS.start], *emas)
        s._acc = scalars[_EMAS.stop:]
        if n > s._last_warm:
            s.update = s._update_hot
        return s

    # -- bars --------------------------------------------------------------------------------------------------

    def update(self, cols: np.ndarray, closes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Feed ``closes[j]`` to column ``cols[j]`` for j = 0, 1, ... in that order (a column
        may repeat: its bars are applied in order). A close outside ``CLOSE_DOMAIN`` (or NaN)
        raises ValueError before any column changes.

        Returns a (len(cols), 12) array: bar j's values in ``INDICATOR_FIELDS`` order, NaN for
        a field still warming up or not due under its calculation frequency (None in the message).
        """
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        closes = np.ascontiguousarray(closes, dtype=np.float64)
        if out is None:
            out = np.empty((len(cols), 12))
        self._kernel.update(cols, closes, self.freqs, out)
        return out

    def step(self, col: int, close: float) -> list[float | None]:
        """One bar of one column, the per-bar path (one series fed bar by bar): its 12 values
        in ``INDICATOR_FIELDS`` order, None for a field not due; the same as :meth:`update`."""
        values = self._kernel.step(col, close)
        if self.freqs is not None:
            n = int(self.ix[col, 2])
            values = [v if n % k == 0 else None for v, k in zip(values, self.freqs.tolist())]
        return [None if v != v else v for v in values]
