"""Warm indicator states of many series as numpy columns: what the analytics service runs.

A series starts in an :class:`IndicatorState` (its warm-up bars take the scalar path); once
every field is seeded, :meth:`IndicatorColumns.add` moves its state into one column of
these arrays, and from then on :meth:`IndicatorColumns.update` advances any subset of the
columns by one bar each, with one numpy operation per step for all of them. Series arrive
unevenly (a polled batch holds 40 bars of one symbol and 3 of another), so unlike
:class:`~stockpipe.analytics.indicators.batch.IndicatorBatch` (lockstep) every column keeps
its own ring positions and bar count, and the bars of one series are applied in order by
calling ``update`` once per rank (the first bar of every series in the batch, then the
second, ...).

Bit-identical to :class:`IndicatorState`: the hot path's IEEE operations in the same order,
elementwise, ``math.log`` for the log returns, and the same exact recomputes (``fsum`` per
column) on the bars where the scalar path takes its full branch: every ``RECOMPUTE_EVERY``
bars of a series and when an M2 collapses below its floor. The tests feed random
interleavings of series through both and compare every bit.

Memory: ``max(windows) + volatility_period + 18`` floats and three integers per column
(~720 bytes with the defaults), against ~3 kB for an IndicatorState's lists of Python floats.
"""

from __future__ import annotations

from math import fsum, log

import numpy as np

from stockpipe.analytics.indicators.numerics import _M2_DROP, _RECOMPUTE_MASK, _k
from stockpipe.analytics.indicators.state import IndicatorConfig, IndicatorState

__all__ = ["IndicatorColumns"]


def _selector(cols: np.ndarray) -> slice | np.ndarray:
    """Distinct ascending ``cols`` as a slice when they are a contiguous run (indexing then
    makes views, not copies), else the array itself."""
    if len(cols):
        first, last = cols[[0, -1]].tolist()
        if last - first == len(cols) - 1:
            return slice(first, last + 1)
    return cols

# Rows of the scalar state matrix, in IndicatorState._st order after pos, rpos and n.
_PREV, _SPS, _SPL, _SPB, _BM, _M2B, _LB, _SPV, _VM, _M2V, _LV, _GAIN, _LOSS, _ES, _EL, _MF, _MS, _SIG = range(18)


class IndicatorColumns:
    """Seeded indicator states of many series, one column each, advanced a subset at a time."""

    def __init__(self, config: IndicatorConfig | None = None, capacity: int = 64) -> None:
        cfg = config if config is not None else IndicatorConfig()
        self.config = cfg
        self.width = max(cfg.sma_short, cfg.sma_long, cfg.bollinger_period)
        self.capacity = 0
        self.ring = np.zeros((self.width, 0))                # closes, row = ring slot
        self.rring = np.zeros((cfg.volatility_period, 0))    # log returns
        self.st = np.zeros((18, 0))                          # the scalar state, rows above
        self.pos = np.zeros(0, dtype=np.int64)               # next write slot in ring / rring
        self.rpos = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0, dtype=np.int64)                 # bars fed
        self._free: list[int] = []
        self._grow(max(1, capacity))
        self._kema = np.array([_k(cfg.ema_short), _k(cfg.ema_long), _k(cfg.macd_fast), _k(cfg.macd_slow)]).reshape(4, 1)
        self._ksig = _k(cfg.macd_signal)

    def __len__(self) -> int:
        return self.capacity - len(self._free)

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def widen(a: np.ndarray) -> np.ndarray:
            out = np.zeros(a.shape[:-1] + (capacity,), dtype=a.dtype)
            out[..., :old] = a
            return out

        self.ring, self.rring, self.st = widen(self.ring), widen(self.rring), widen(self.st)
        self.pos, self.rpos, self.n = widen(self.pos), widen(self.rpos), widen(self.n)
        self._free.extend(range(capacity - 1, old - 1, -1))  # lowest index handed out first
        self.capacity = capacity

    # -- moving series in and out ------------------------------------------------------------------------------

    def add(self, state: IndicatorState) -> int:
        """Copy a seeded ``state`` (every field past warm-up) into a free column; return it."""
        if state.count <= state._last_warm:
            raise ValueError("only a state whose every field is seeded can move into a column")
        if state.config != self.config:
            raise ValueError("the state's config differs from the columns'")
        if not self._free:
            self._grow(2 * self.capacity)
        col = self._free.pop()
        (pos, rpos, n, *scalars) = state._st
        self.ring[:, col] = state._ring
        self.rring[:, col] = state._rring
        self.st[:, col] = scalars
        self.pos[col], self.rpos[col], self.n[col] = pos, rpos, n
        return col

    def remove(self, col: int) -> None:
        """Free a column (its series was dropped)."""
        self._free.append(col)

    def state(self, col: int) -> IndicatorState:
        """The column's state as an :class:`IndicatorState` (tests, debugging)."""
        s = IndicatorState(self.config)
        s._ring = self.ring[:, col].tolist()
        s._rring = self.rring[:, col].tolist()
        s._st = (int(self.pos[col]), int(self.rpos[col]), int(self.n[col]), *self.st[:, col].tolist())
        s.update = s._update_hot
        return s

    # -- one bar for each of some columns ----------------------------------------------------------------------

    def update(self, cols: np.ndarray, closes: np.ndarray) -> np.ndarray:
        """Feed ``closes[j]`` to column ``cols[j]`` (columns distinct and ascending, closes in
        the domain).

        Returns a (12, len(cols)) array of the values in ``INDICATOR_FIELDS`` order, before
        any calculation-frequency gating (the caller applies it with the bar counts).
        """
        cfg = self.config
        ps, pl, pb, pv, width, cap = cfg.sma_short, cfg.sma_long, cfg.bollinger_period, cfg.volatility_period, \
            self.width, self.capacity
        c = closes
        sel = _selector(cols)
        # The state of these columns: a view when they are a contiguous run (sorted columns of
        # series that all have a bar: the usual case), else a copy written back at the end.
        st = self.st[:, sel] if type(sel) is slice else np.take(self.st, cols, axis=1)
        prev = st[_PREV].copy()
        n = self.n[sel] + 1
        pos = self.pos[sel].copy()
        rpos = self.rpos[sel].copy()
        r = np.fromiter(map(log, (c / prev).tolist()), np.float64, len(c))  # libm's log, as the scalar path
        refresh = np.flatnonzero((n & _RECOMPUTE_MASK) == 0)

        # Closes: each column's own ring position.
        ring = self.ring.reshape(-1)  # slot * capacity + column
        old = ring[((pos - pb) % width) * cap + cols]
        ring[pos * cap + cols] = c
        t = st[_SPS] + c
        sma_s = t / ps
        st[_SPS] = t - ring[((pos - ps + 1) % width) * cap + cols]
        t = st[_SPL] + c
        sma_l = t / pl
        st[_SPL] = t - ring[((pos - pl + 1) % width) * cap + cols]
        t = st[_SPB] + c
        mid = t / pb
        st[_SPB] = t - ring[((pos - pb + 1) % width) * cap + cols]
        m2b = st[_M2B] + (c - old) * ((c - mid) + (old - st[_BM]))
        _floor(m2b, st[_LB], lambda j: _tails(self.ring, pos[j], cols[j], pb))
        st[_M2B] = m2b
        st[_BM] = mid
        if len(refresh):  # exact sums and M2 (all the series of a steady feed refresh on the same bar)
            longest = max(ps - 1, pl - 1, pb)
            tails = _tails(self.ring, pos[refresh], cols[refresh], longest)
            for row, k in ((_SPS, ps - 1), (_SPL, pl - 1), (_SPB, pb - 1)):
                st[row, refresh] = _fsums(tails[longest - k:])
            st[_M2B, refresh] = m2 = _m2s(tails[longest - pb:])
            st[_LB, refresh] = m2 * _M2_DROP
        pos += 1
        pos[pos == width] = 0
        self.pos[sel] = pos
        half = np.sqrt(np.maximum(st[_M2B], 0.0) / pb) * float(cfg.bollinger_std)

        # Log returns.
        rring = self.rring.reshape(-1)
        at = rpos * cap + cols
        old = rring[at]
        rring[at] = r
        t = st[_SPV] + r
        mean_r = t / pv
        st[_SPV] = t - rring[((rpos - pv + 1) % pv) * cap + cols]
        m2v = st[_M2V] + (r - old) * ((r - mean_r) + (old - st[_VM]))
        _floor(m2v, st[_LV], lambda j: self.rring[:, cols[j]])
        st[_M2V] = m2v
        st[_VM] = mean_r
        if len(refresh):
            st[_SPV, refresh] = _fsums(_tails(self.rring, rpos[refresh], cols[refresh], pv - 1))
            st[_M2V, refresh] = m2 = _m2s(self.rring[:, cols[refresh]])
            st[_LV, refresh] = m2 * _M2_DROP
        rpos += 1
        rpos[rpos == pv] = 0
        self.rpos[sel] = rpos

        # RSI (Wilder).
        change = c - prev
        avg = st[_GAIN:_LOSS + 1]
        avg *= float(cfg.rsi_period - 1)
        avg[0] += np.maximum(change, 0.0)  # + 0.0 leaves a value unchanged: same bits as the branch
        avg[1] -= np.minimum(change, 0.0)
        avg *= 1.0 / cfg.rsi_period
        gain, loss = avg
        total = gain + loss
        rsi = np.zeros(len(c))
        np.divide(gain, total, out=rsi, where=total != 0.0)
        rsi *= 100.0

        # EMAs (short, long, macd fast, macd slow) in one step, then the MACD signal.
        ema = st[_ES:_MS + 1]
        step = c - ema
        step *= self._kema
        ema += step  # (close - ema) * k + ema
        line = st[_MF] - st[_MS]
        st[_SIG] = (line - st[_SIG]) * self._ksig + st[_SIG]

        st[_PREV] = c
        if type(sel) is not slice:
            self.st[:, cols] = st
        self.n[sel] = n

        out = np.empty((12, len(c)))
        out[0] = rsi
        out[1] = sma_s
        out[2] = sma_l
        out[3] = st[_ES]
        out[4] = st[_EL]
        out[5] = mid + half
        out[6] = mid
        out[7] = mid - half
        out[8] = line
        out[9] = st[_SIG]
        out[10] = line - st[_SIG]
        out[11] = np.sqrt(np.maximum(st[_M2V], 0.0) / pv)
        return out



def _floor(m2: np.ndarray, lb: np.ndarray, window) -> None:
    """IndicatorState's floor rule, in place: raise the floor, or recompute a collapsed M2
    exactly from ``window(columns)`` (the values of those columns' windows)."""
    floor = m2 * _M2_DROP
    up = floor > lb
    np.copyto(lb, floor, where=up)
    down = np.flatnonzero(~up & (m2 < lb))
    if len(down):
        m2[down] = exact = _m2s(window(down))
        lb[down] = exact * _M2_DROP


def _tails(ring: np.ndarray, last: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """(k, len(cols)): the k ring values of each column ending at its slot ``last``, oldest first."""
    rows = (last[None, :] + np.arange(1 - k, 1)[:, None]) % ring.shape[0]
    return ring[rows, cols[None, :]]


def _fsums(a: np.ndarray) -> np.ndarray:
    """Exact (``math.fsum``) sum of each column."""
    return np.array([fsum(col) for col in a.T.tolist()])


def _m2s(a: np.ndarray) -> np.ndarray:
    """:func:`~stockpipe.analytics.indicators.numerics._m2` of each column: the same operations."""
    shifted = a - a.min(axis=0)
    dev = shifted - _fsums(shifted) / a.shape[0]
    return _fsums(dev * dev)
