"""One symbol's indicator set: its configuration and the fused O(1) update.

The conventions and numerics are the package's (:mod:`stockpipe.analytics.indicators`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, fields
from math import fsum, log, sqrt

from stockpipe.analytics.indicators.numerics import (
    _CMAX,
    _CMIN,
    _M2_DROP,
    _RECOMPUTE_MASK,
    _check_close,
    _check_period,
    _k,
    _m2,
    _tail,
)
from stockpipe.common.messages import INDICATOR_FIELDS

__all__ = ["IndicatorConfig", "IndicatorState", "IndicatorValues"]

IndicatorValues = tuple[float | None, ...]
"""The 12 values of one bar, in ``INDICATOR_FIELDS`` order."""

@dataclass(frozen=True, kw_only=True)
class IndicatorConfig:
    """Periods (in bars) and calculation frequencies of one symbol's indicator set.

    A ``*_frequency`` of k emits that indicator's fields only on every k-th bar of the
    symbol (bar counts 1, 2, ...; emitted when ``count % k == 0``) and ``None`` on the
    others; the state is still updated on every bar, so the values emitted never change.
    """

    rsi_period: int = 14
    sma_short: int = 20
    sma_long: int = 50
    ema_short: int = 12
    ema_long: int = 26
    bollinger_period: int = 20
    bollinger_std: float = 2.0
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    volatility_period: int = 20
    rsi_frequency: int = 1
    sma_short_frequency: int = 1
    sma_long_frequency: int = 1
    ema_short_frequency: int = 1
    ema_long_frequency: int = 1
    bollinger_frequency: int = 1
    macd_frequency: int = 1
    volatility_frequency: int = 1

    def __post_init__(self) -> None:
        for name in ("rsi_period", "sma_short", "sma_long", "ema_short", "ema_long",
                     "bollinger_period", "macd_fast", "macd_slow", "volatility_period"):
            _check_period(name, getattr(self, name))
        _check_period("macd_signal", self.macd_signal, minimum=1)
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be shorter than macd_slow ({self.macd_slow})")
        std = self.bollinger_std
        # At most 1000: the bands stay finite for every close in CLOSE_DOMAIN.
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 < std <= 1000:
            raise ValueError(f"bollinger_std must be a number in (0, 1000], got {std!r}")
        for f in fields(self):
            if f.name.endswith("_frequency"):
                value = getattr(self, f.name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{f.name} must be an integer >= 1, got {value!r}")

    @property
    def warmup_bars(self) -> int:
        """Bars fed before every field is non-None (TA-Lib's largest lookback + 1)."""
        return 1 + max(self.rsi_period, self.sma_short - 1, self.sma_long - 1, self.ema_short - 1,
                       self.ema_long - 1, self.bollinger_period - 1,
                       self.macd_slow + self.macd_signal - 2, self.volatility_period)

    def field_frequencies(self) -> tuple[int, ...]:
        """The calculation frequency of each field, in ``INDICATOR_FIELDS`` order."""
        return (self.rsi_frequency, self.sma_short_frequency, self.sma_long_frequency,
                self.ema_short_frequency, self.ema_long_frequency,
                self.bollinger_frequency, self.bollinger_frequency, self.bollinger_frequency,
                self.macd_frequency, self.macd_frequency, self.macd_frequency,
                self.volatility_frequency)


@functools.lru_cache(maxsize=64)
def _hot_constants(cfg: IndicatorConfig) -> tuple:
    """Constants of the hot path, in one tuple: one attribute load and one unpack per bar.

    Shared by every state with the same config, so hundreds of symbols read one copy rather
    than one each (the gain was within the noise of the 500-symbol benchmark; it costs nothing).
    """
    return (
        cfg.sma_short, cfg.sma_long, cfg.bollinger_period, cfg.volatility_period,
        1.0 / cfg.rsi_period, float(cfg.rsi_period - 1), float(cfg.bollinger_std),
        _k(cfg.ema_short), _k(cfg.ema_long), _k(cfg.macd_fast), _k(cfg.macd_slow),
        _k(cfg.macd_signal), max(cfg.sma_short, cfg.sma_long, cfg.bollinger_period),
        # ring offsets: each window's oldest value, and the value leaving the bollinger window
        1 - cfg.sma_short, 1 - cfg.sma_long, 1 - cfg.bollinger_period, -cfg.bollinger_period,
        1 - cfg.volatility_period,
    )


assert len(INDICATOR_FIELDS) == 12 and INDICATOR_FIELDS[0] == "rsi" and INDICATOR_FIELDS[-1] == "volatility"


class IndicatorState:
    """One symbol's indicator set, updated once per closed bar.

    ``update(close)`` returns a 12-tuple in ``INDICATOR_FIELDS`` order (rsi, sma_short,
    sma_long, ema_short, ema_long, bb_upper, bb_middle, bb_lower, macd, macd_signal,
    macd_hist, volatility), ``None`` for a field still warming up or not due under its
    calculation frequency. The values are bit-identical to the classes above fed the same
    closes; this class fuses them into one function with the state in a flat tuple, which
    is what brings a bar to ~1.6 us in CPython 3.11, ~1.9 us with 500 symbols interleaved
    (one call and a handful of attribute loads instead of eight calls and ~60 attribute
    reads and writes; see bench/indicators.py).

    Two code paths share that state: ``update`` as defined here handles everything
    (warm-up, the periodic exact recompute); once every field is seeded, each instance
    switches to ``_update_hot``, which does the same arithmetic with no warm-up checks and
    hands the one bar in ``RECOMPUTE_EVERY`` that recomputes back to the full path.

    Memory: one ring of ``max(sma_short, sma_long, bollinger_period)`` closes and one of
    ``volatility_period`` log returns; nothing grows with the series.
    """

    # self._st, the per-bar scalars, unpacked and repacked once per bar:
    #   pos, rpos        next write index in the close ring / the return ring
    #   n                bars fed so far
    #   prev             previous close
    #   sps, spl, spb    TA-Lib running sums of the last period-1 closes (sma_short, sma_long, bb)
    #   bm, m2b, lb      bollinger: previous middle, M2, and the floor under which M2 is
    #                    recomputed (2**-10 x its peak since the last recompute; keeping the
    #                    floor alone suffices: m2 * 2**-10 > floor exactly when m2 > peak)
    #   spv              running sum of the last volatility_period-1 log returns
    #   vm, m2v, lv      volatility: previous mean return, M2, its recompute floor
    #   gain, loss       Wilder averages (raw sums during the first rsi_period changes)
    #   es, el           EMA short / long (None until seeded; seed sums in self._acc)
    #   mf, ms, sig      MACD fast EMA, slow EMA, signal EMA (None until seeded)

    def __init__(self, config: IndicatorConfig | None = None) -> None:
        cfg = config if config is not None else IndicatorConfig()
        self.config = cfg
        self._width = max(cfg.sma_short, cfg.sma_long, cfg.bollinger_period)
        # Lists, not array('d'): array is more compact (8 bytes a value against a pointer and a
        # 24-byte float) and ~5 % faster with 500 symbols interleaved, but boxing each read
        # makes one symbol's bar ~6 % slower; measured both, kept the plain list.
        self._ring = [0.0] * self._width
        self._rring = [0.0] * cfg.volatility_period
        self._st: tuple = (0, 0, 0, 0.0,
                           0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                           0.0, 0.0, 0.0, 0.0,
                           0.0, 0.0, None, None, None, None, None)
        self._acc = [0.0, 0.0, 0.0, 0.0, 0.0]  # seed sums: ema short, ema long, macd fast, slow, signal
        self._last_warm = cfg.warmup_bars - 1  # index of the last bar with a field still unseeded
        freqs = cfg.field_frequencies()
        self._freqs = None if all(f == 1 for f in freqs) else freqs
        self._h = _hot_constants(cfg)

    @classmethod
    def from_history(cls, closes: Iterable[float], config: IndicatorConfig | None = None) -> IndicatorState:
        """Rebuild a state by replaying closes from the first bar of the series (exact)."""
        state = cls(config)
        for close in closes:
            state.update(close)  # looked up every bar: the bound method changes after warm-up
        return state

    @property
    def count(self) -> int:
        """Bars fed so far."""
        return self._st[2]

    def __getstate__(self) -> dict:
        # The hot-path switch is a bound method of this instance: never copy it.
        state = self.__dict__.copy()
        state.pop("update", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.count > self._last_warm:
            self.update = self._update_hot

    def update(self, close: float) -> IndicatorValues:
        """Feed one close; see the class doc for the result. The complete (slow) path."""
        _check_close(close)
        cfg = self.config
        ps, pl, pb, pv, inv_pr, pr1, kb, kes, kel, kmf, kms, ksig, width, *_ = self._h
        (pos, rpos, n, prev, sps, spl, spb, bm, m2b, lb,
         spv, vm, m2v, lv, gain, loss, es, el, mf, ms, sig) = self._st
        i = n  # index of this bar
        n += 1
        refresh = not n & _RECOMPUTE_MASK
        r = log(close / prev) if i else 0.0

        # Closes: one ring; window p's oldest value sits p-1 slots behind the newest.
        ring = self._ring
        old_b = ring[pos - pb]
        ring[pos] = close
        t = sps + close
        sma_s = t / ps
        sps = t - ring[pos - ps + 1]
        t = spl + close
        sma_l = t / pl
        spl = t - ring[pos - pl + 1]
        t = spb + close
        mid = t / pb
        spb = t - ring[pos - pb + 1]
        if n > pb:
            m2b += (close - old_b) * ((close - mid) + (old_b - bm))
            floor = m2b * _M2_DROP
            if floor > lb:
                lb = floor
            elif m2b < lb:
                m2b = _m2(_tail(ring, pos, pb))
                lb = m2b * _M2_DROP
        elif n == pb:
            m2b = _m2(_tail(ring, pos, pb))
            lb = m2b * _M2_DROP
        bm = mid
        if refresh:
            sps = fsum(_tail(ring, pos, ps - 1))
            spl = fsum(_tail(ring, pos, pl - 1))
            spb = fsum(_tail(ring, pos, pb - 1))
            if n >= pb:
                m2b = _m2(_tail(ring, pos, pb))
                lb = m2b * _M2_DROP
        pos = 0 if pos + 1 == width else pos + 1
        bb_u = bb_m = bb_l = None
        if i >= pb - 1:
            half = sqrt(m2b / pb if m2b > 0.0 else 0.0) * kb
            bb_u, bb_m, bb_l = mid + half, mid, mid - half

        # Log returns and RSI need a previous close.
        rsi = vol = None
        if i:
            rring = self._rring
            old_r = rring[rpos]
            rring[rpos] = r
            t = spv + r
            mean_r = t / pv
            spv = t - rring[rpos - pv + 1]
            if i > pv:
                m2v += (r - old_r) * ((r - mean_r) + (old_r - vm))
                floor = m2v * _M2_DROP
                if floor > lv:
                    lv = floor
                elif m2v < lv:
                    m2v = _m2(rring)
                    lv = m2v * _M2_DROP
            elif i == pv:
                m2v = _m2(rring)
                lv = m2v * _M2_DROP
            vm = mean_r
            if refresh:
                spv = fsum(_tail(rring, rpos, pv - 1))
                if i >= pv:
                    m2v = _m2(rring)
                    lv = m2v * _M2_DROP
            rpos = 0 if rpos + 1 == pv else rpos + 1
            if i >= pv:
                vol = sqrt(m2v / pv if m2v > 0.0 else 0.0)

            pr = cfg.rsi_period
            change = close - prev
            if i > pr:
                gain *= pr1
                loss *= pr1
            if change < 0:
                loss -= change
            else:
                gain += change
            if i >= pr:
                gain *= inv_pr
                loss *= inv_pr
                total = gain + loss
                rsi = 100.0 * (gain / total) if total != 0.0 else 0.0

        # EMAs: seeded with the left-to-right sum of the first `period` closes.
        acc = self._acc
        if es is not None:
            es = (close - es) * kes + es
        else:
            acc[0] += close
            if i == cfg.ema_short - 1:
                es = acc[0] / cfg.ema_short
        if el is not None:
            el = (close - el) * kel + el
        else:
            acc[1] += close
            if i == cfg.ema_long - 1:
                el = acc[1] / cfg.ema_long

        # MACD, TA-Lib style: the fast EMA is seeded on bars slow-fast .. slow-1.
        fast, slow, signal_p = cfg.macd_fast, cfg.macd_slow, cfg.macd_signal
        if ms is not None:
            ms = (close - ms) * kms + ms
        else:
            acc[3] += close
            if i == slow - 1:
                ms = acc[3] / slow
        if mf is not None:
            mf = (close - mf) * kmf + mf
        elif i >= slow - fast:
            acc[2] += close
            if i == slow - 1:
                mf = acc[2] / fast
        macd = signal = hist = None
        if ms is not None:
            line = mf - ms
            if sig is not None:
                sig = (line - sig) * ksig + sig
            else:
                acc[4] += line
                if i == slow + signal_p - 2:
                    sig = acc[4] / signal_p
            if sig is not None:
                macd, signal, hist = line, sig, line - sig

        self._st = (pos, rpos, n, close, sps, spl, spb, bm, m2b, lb,
                    spv, vm, m2v, lv, gain, loss, es, el, mf, ms, sig)
        if i == self._last_warm:
            # Every field is seeded: from now on this instance's `update` is the hot path.
            self.update = self._update_hot
        out = (rsi, sma_s if i >= ps - 1 else None, sma_l if i >= pl - 1 else None, es, el,
               bb_u, bb_m, bb_l, macd, signal, hist, vol)
        return out if self._freqs is None else self._gate(out, n)

    def _gate(self, out: IndicatorValues, n: int) -> IndicatorValues:
        return tuple(v if n % k == 0 else None for v, k in zip(out, self._freqs))

    def _update_hot(self, close: float) -> IndicatorValues:
        """Feed one close once every field is seeded: the same arithmetic as ``update``."""
        (pos, rpos, n, prev, sps, spl, spb, bm, m2b, lb,
         spv, vm, m2v, lv, gain, loss, es, el, mf, ms, sig) = self._st
        if not (n + 1) & _RECOMPUTE_MASK or not _CMIN <= close <= _CMAX:
            # A recompute bar, or a bad close (the full path raises before changing anything).
            return IndicatorState.update(self, close)
        ps, pl, pb, pv, inv_pr, pr1, kb, kes, kel, kmf, kms, ksig, width, os_, ol, ob, oold, ov = self._h
        r = log(close / prev)

        ring = self._ring
        old = ring[pos + oold]
        ring[pos] = close
        t = sps + close
        sma_s = t / ps
        sps = t - ring[pos + os_]   # negative indices wrap around the ring
        t = spl + close
        sma_l = t / pl
        spl = t - ring[pos + ol]
        t = spb + close
        mid = t / pb
        spb = t - ring[pos + ob]
        m2b += (close - old) * ((close - mid) + (old - bm))
        floor = m2b * _M2_DROP
        if floor > lb:
            lb = floor
        elif m2b < lb:
            m2b = _m2(_tail(ring, pos, pb))
            lb = m2b * _M2_DROP
        pos += 1
        if pos == width:
            pos = 0
        half = sqrt(m2b / pb if m2b > 0.0 else 0.0) * kb

        rring = self._rring
        old = rring[rpos]
        rring[rpos] = r
        t = spv + r
        mean_r = t / pv
        spv = t - rring[rpos + ov]
        m2v += (r - old) * ((r - mean_r) + (old - vm))
        floor = m2v * _M2_DROP
        if floor > lv:
            lv = floor
        elif m2v < lv:
            m2v = _m2(rring)
            lv = m2v * _M2_DROP
        rpos += 1
        if rpos == pv:
            rpos = 0

        change = close - prev
        gain *= pr1
        loss *= pr1
        if change < 0:
            loss -= change
        else:
            gain += change
        gain *= inv_pr
        loss *= inv_pr
        total = gain + loss

        es = (close - es) * kes + es
        el = (close - el) * kel + el
        ms = (close - ms) * kms + ms
        mf = (close - mf) * kmf + mf
        line = mf - ms
        sig = (line - sig) * ksig + sig

        self._st = (pos, rpos, n + 1, close, sps, spl, spb, mid, m2b, lb,
                    spv, mean_r, m2v, lv, gain, loss, es, el, mf, ms, sig)
        out = (
            100.0 * (gain / total) if total != 0.0 else 0.0,
            sma_s,
            sma_l,
            es,
            el,
            mid + half,
            mid,
            mid - half,
            line,
            sig,
            line - sig,
            sqrt(m2v / pv if m2v > 0.0 else 0.0),
        )
        return out if self._freqs is None else self._gate(out, n + 1)
