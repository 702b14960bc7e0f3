"""The alert rules of many series as numpy columns, beside :class:`IndicatorColumns`.

A series' :class:`AlertState` moves into column ``col`` here when its indicator state moves
into column ``col`` of the indicator columns; from then on :meth:`AlertColumns.update`
evaluates every rule for a subset of columns at once (one bar each), and only the rare bars
that fire build an :class:`Alert` in Python. The semantics are :mod:`stockpipe.analytics.alerts`'
exactly (same comparisons on the same floats, the volume baseline as the same correctly
rounded quotient), and the tests compare the alerts with AlertState's bar by bar.
"""

from __future__ import annotations

import numpy as np

from stockpipe.analytics.alerts import RULES, AlertConfig, AlertState
from stockpipe.analytics.indicators.columns import _selector
from stockpipe.common.messages import Alert, Bar

__all__ = ["AlertColumns"]

_UNSEEN = -2          # a rule's state before its first evaluation
_NEVER = -(2**62)     # "last fired" of a rule that never fired
_EXACT = 2.0**53      # volume sums below this are exact in float64
_CONFIGURED = {  # rules whose threshold is a config value (the others compare with an indicator)
    "rsi_overbought": "rsi_overbought", "rsi_oversold": "rsi_oversold",
    "volatility_high": "volatility_threshold", "price_change": "price_change_threshold",
    "volume_spike": "volume_change_threshold",
}


class AlertColumns:
    """Rule state of many series; column numbers are the indicator columns'."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self.rules = tuple(r for r in RULES if r in config.rules)
        self.window = config.volume_window
        self.capacity = 0
        self.count = np.zeros(0, dtype=np.int64)                  # bars seen
        self.prev = np.zeros(0)                                   # previous close
        self.volumes = np.zeros((self.window, 0), dtype=np.int64)  # ring of the last volumes
        self.vpos = np.zeros(0, dtype=np.int64)
        self.state = np.zeros((len(self.rules), 0), dtype=np.int8)  # last evaluated condition per rule
        self.fired = np.zeros((len(self.rules), 0), dtype=np.int64)  # bar index of the last alert per rule
        self.limits = np.zeros((2, 0))  # per column (its interval's class): price change, volatility
        self.senders: list[AlertState | None] = []  # builds the column's Alert messages

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def widen(a: np.ndarray) -> np.ndarray:
            out = np.zeros(a.shape[:-1] + (capacity,), dtype=a.dtype)
            out[..., :old] = a
            return out

        self.count, self.prev, self.volumes, self.vpos = (widen(self.count), widen(self.prev),
                                                          widen(self.volumes), widen(self.vpos))
        self.state, self.fired, self.limits = widen(self.state), widen(self.fired), widen(self.limits)
        self.senders.extend([None] * (capacity - old))
        self.capacity = capacity

    def add(self, col: int, alerts: AlertState) -> None:
        """Move ``alerts`` (a series' state, its previous close known) into column ``col``."""
        cfg = alerts.config
        if cfg.rules != self.config.rules or cfg.volume_window != self.window \
                or cfg.cooldown_bars != self.config.cooldown_bars or alerts._prev_close is None:
            raise ValueError("the alert state does not fit these columns")
        if col >= self.capacity:
            self._grow(max(col + 1, 2 * self.capacity))
        self.count[col] = alerts._count
        self.prev[col] = alerts._prev_close
        self.volumes[:, col] = alerts._volumes
        self.vpos[col] = alerts._vol_pos
        for r, rule in enumerate(self.rules):
            self.state[r, col] = int(alerts._state[rule]) if rule in alerts._state else _UNSEEN
            self.fired[r, col] = alerts._last_fired.get(rule, _NEVER)
        self.limits[:, col] = cfg.price_change_threshold, cfg.volatility_threshold
        self.senders[col] = alerts

    def remove(self, col: int) -> None:
        self.senders[col] = None

    def update(self, cols: np.ndarray, values: np.ndarray, closes: np.ndarray, volumes: np.ndarray,
               bars: list[Bar], at: list[int], out: dict[int, list[Alert]]) -> None:
        """Evaluate the rules on one bar per column; the alerts of ``bars[at[j]]`` go to ``out[at[j]]``.

        ``values``: the (12, m) indicator values of those bars, NaN where a field was not
        emitted (its rules are then not evaluated, as AlertState with ``None``).
        """
        cfg, w = self.config, self.window
        sel = _selector(cols)  # a slice for a contiguous run of columns: views, not copies
        index = self.count[sel].copy()
        prev = self.prev[sel].copy()

        # Volume baseline: mean of the window before this bar; none while a volume in it is 0.
        ring = self.volumes[:, sel]
        has_base = (index >= w) & (ring.min(axis=0) > 0)
        baseline = ring.sum(axis=0) / w  # exact int64 sums, one rounding: Python's int / int
        for j in np.flatnonzero(has_base & (ring.max(axis=0) * float(w) >= _EXACT)).tolist():
            baseline[j] = sum(ring[:, j].tolist()) / w  # large volumes: Python's exact integers
        pos = self.vpos[sel].copy()
        self.volumes[pos, cols] = volumes
        pos += 1
        pos[pos == w] = 0
        self.vpos[sel] = pos
        self.count[sel] = index + 1
        self.prev[sel] = closes

        limits = self.limits[:, sel]
        for r, rule in enumerate(self.rules):
            evaluated, holds, value, threshold = self._evaluate(rule, cfg, values, closes, prev, volumes,
                                                                baseline, has_base, limits)
            was = self.state[r, sel]
            starts = evaluated & (holds != 0) & (was != _UNSEEN) & (holds != was)
            self.state[r, sel] = np.where(evaluated, holds, was)
            if not starts.any():
                continue
            last = self.fired[r, sel]
            fire = starts & (index - last > cfg.cooldown_bars)
            self.fired[r, sel] = np.where(fire, index, last)
            for j in np.flatnonzero(fire).tolist():
                i, sender = at[j], self.senders[int(cols[j])]
                if rule in _CONFIGURED:  # the config's own number, as AlertState passes it
                    limit = getattr(sender.config, _CONFIGURED[rule])
                else:
                    limit = float(threshold[j])
                out.setdefault(i, []).append(sender.alert(rule, bars[i], float(value[j]), limit))

    @staticmethod
    def _evaluate(rule: str, cfg: AlertConfig, v: np.ndarray, closes: np.ndarray, prev: np.ndarray,
                  volumes: np.ndarray, baseline: np.ndarray, has_base: np.ndarray, limits: np.ndarray) -> tuple:
        """(evaluated, condition state as int8, value, threshold) of one rule, per column."""
        if rule == "rsi_overbought":
            return ~np.isnan(v[0]), (v[0] > cfg.rsi_overbought).astype(np.int8), v[0], None
        if rule == "rsi_oversold":
            return ~np.isnan(v[0]), (v[0] < cfg.rsi_oversold).astype(np.int8), v[0], None
        if rule == "volatility_high":
            return ~np.isnan(v[11]), (v[11] > limits[1]).astype(np.int8), v[11], limits[1]
        if rule == "price_change":
            change = closes / prev - 1.0
            state = (change > limits[0]).astype(np.int8) - (change < -limits[0]).astype(np.int8)
            return np.ones(len(closes), dtype=bool), state, change, limits[0]
        if rule == "volume_spike":
            with np.errstate(divide="ignore", invalid="ignore"):  # a ratio without a baseline is not evaluated
                ratio = volumes / baseline
            return has_base, (ratio > cfg.volume_change_threshold).astype(np.int8), ratio, None
        if rule in ("macd_cross_up", "macd_cross_down"):
            macd, signal = v[8], v[9]
            holds = macd > signal if rule == "macd_cross_up" else macd < signal
            return ~(np.isnan(macd) | np.isnan(signal)), holds.astype(np.int8), macd, signal
        if rule == "bollinger_breakout_up":
            return ~np.isnan(v[5]), (closes > v[5]).astype(np.int8), closes, v[5]
        if rule == "bollinger_breakout_down":
            return ~np.isnan(v[7]), (closes < v[7]).astype(np.int8), closes, v[7]
        raise AssertionError(f"unhandled rule {rule}")  # RULES and this function disagree
