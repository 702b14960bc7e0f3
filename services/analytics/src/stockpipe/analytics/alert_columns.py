"""The alert rules of many series, beside :class:`IndicatorColumns` (one column per series).

A series' rule state lives in column ``col`` here when its indicator state is column ``col``
of the indicator columns (:meth:`AlertColumns.new`, or an :class:`AlertState` copied in by
:meth:`AlertColumns.add`); :meth:`AlertColumns.update`
evaluates every rule on a sequence of bars of any columns, in order, in the C kernel
(:mod:`stockpipe.analytics._kernel`), and only the rare bars that fire build an
:class:`Alert` in Python. The semantics are :mod:`stockpipe.analytics.alerts`' exactly (same
comparisons on the same floats, the volume baseline as the same correctly rounded quotient of
exact integers), and the tests compare the alerts with AlertState's bar by bar.
"""

from __future__ import annotations

import numpy as np

from stockpipe.analytics import _kernel
from stockpipe.analytics.alerts import RULES, AlertConfig, AlertState
from stockpipe.common.messages import Alert, Bar

__all__ = ["AlertColumns"]

_UNSEEN = -2          # a rule's state before its first evaluation
_NEVER = -(2**62)     # "last fired" of a rule that never fired
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
        self._rule_ids = np.array([RULES.index(r) for r in self.rules], dtype=np.int64)
        self._params = (float(config.rsi_overbought), float(config.rsi_oversold),
                        float(config.volume_change_threshold), config.volume_window, config.cooldown_bars)
        self.window = config.volume_window
        self.capacity = 0
        self.count = np.zeros(0, dtype=np.int64)                   # bars seen
        self.prev = np.zeros(0)                                    # previous close
        self.volumes = np.zeros((0, self.window), dtype=np.int64)  # ring of the last volumes
        self.vpos = np.zeros(0, dtype=np.int64)
        self.vsum = np.zeros((0, 2), dtype=np.int64)   # their exact sum: 128 bits, low word first
        self.vzeros = np.zeros(0, dtype=np.int64)      # volumes of 0 among them (warm-up slots excluded)
        self.state = np.zeros((0, len(self.rules)), dtype=np.int8)   # last evaluated condition per rule
        self.fired = np.zeros((0, len(self.rules)), dtype=np.int64)  # bar index of the last alert per rule
        self.limits = np.zeros((0, 2))  # per column (its interval's class): price change, volatility
        self.senders: list[AlertState | None] = []  # builds the column's Alert messages

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def widen(a: np.ndarray) -> np.ndarray:
            out = np.zeros((capacity,) + a.shape[1:], dtype=a.dtype)
            out[:old] = a
            return out

        for name in ("count", "prev", "volumes", "vpos", "vsum", "vzeros", "state", "fired", "limits"):
            setattr(self, name, widen(getattr(self, name)))
        self.senders.extend([None] * (capacity - old))
        self.capacity = capacity

    def new(self, col: int, config: AlertConfig) -> None:
        """Column ``col`` holds a new series (no bar yet) with ``config`` (its interval's thresholds)."""
        self.add(col, AlertState(config))

    def add(self, col: int, alerts: AlertState) -> None:
        """Copy ``alerts`` (a series' state) into column ``col``."""
        cfg = alerts.config
        if cfg.rules != self.config.rules or cfg.volume_window != self.window \
                or cfg.cooldown_bars != self.config.cooldown_bars:
            raise ValueError("the alert state does not fit these columns")
        if col >= self.capacity:
            self._grow(max(col + 1, 2 * self.capacity))
        self.count[col] = alerts._count
        self.prev[col] = 0.0 if alerts._prev_close is None else alerts._prev_close  # None: count is 0
        self.volumes[col] = alerts._volumes
        self.vpos[col] = alerts._vol_pos
        self.vsum[col] = np.array([alerts._vol_sum & (2**64 - 1), alerts._vol_sum >> 64], dtype=np.uint64).view(np.int64)
        self.vzeros[col] = alerts._vol_zeros
        for r, rule in enumerate(self.rules):
            self.state[col, r] = int(alerts._state[rule]) if rule in alerts._state else _UNSEEN
            self.fired[col, r] = alerts._last_fired.get(rule, _NEVER)
        self.limits[col] = cfg.price_change_threshold, cfg.volatility_threshold
        self.senders[col] = alerts

    def remove(self, col: int) -> None:
        self.senders[col] = None

    def update(self, cols: np.ndarray, values: np.ndarray, closes: np.ndarray, volumes: np.ndarray,
               bars: list[Bar], at: list[int], out: dict[int, list[Alert]]) -> None:
        """Evaluate the rules on bar j of column ``cols[j]``, j = 0, 1, ... in order; the alerts
        of ``bars[at[j]]`` go to ``out[at[j]]``.

        ``values``: the (m, 12) indicator values of those bars, NaN where a field was not
        emitted (its rules are then not evaluated, as AlertState with ``None``).
        """
        events = _kernel.alerts(self._params, self._rule_ids, self.count, self.prev, self.volumes, self.vpos,
                                self.vsum, self.vzeros, self.state, self.fired, self.limits, cols, closes,
                                volumes, values)
        for j, r, value, threshold in events:
            i, sender, rule = at[j], self.senders[int(cols[j])], RULES[r]
            if rule in _CONFIGURED:  # the config's own number, as AlertState passes it
                threshold = getattr(sender.config, _CONFIGURED[rule])
            out.setdefault(i, []).append(sender.alert(rule, bars[i], value, threshold))
