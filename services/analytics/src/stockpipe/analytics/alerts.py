"""Alert rules over one symbol's bars and indicator values: pure, no I/O.

:class:`AlertState` holds one symbol's (and interval's) rule state. Feed it every bar once,
in order, with the indicator values of that bar; it returns the alerts that bar raises::

    state = AlertState(AlertConfig())
    for bar in bars:                                   # stockpipe.common.messages.Bar
        alerts = state.update(bar, indicators.update(bar.close))

Rules (name: condition, ``value`` / ``threshold`` of the Alert):

- ``rsi_overbought``: rsi > rsi_overbought (value: RSI, threshold: the level)
- ``rsi_oversold``: rsi < rsi_oversold
- ``volatility_high``: volatility > volatility_threshold (per-bar std dev of log returns)
- ``price_change``: |close / previous close - 1| > price_change_threshold (value: the signed
  fractional change, threshold: the positive fraction). Up and down are distinct states:
  a run of big up moves is one start, but a big drop right after a big jump is a new one.
- ``volume_spike``: volume > volume_change_threshold x the mean volume of the
  ``volume_window`` bars *before* this one (value: volume / that mean, threshold: the
  multiple); undefined until ``volume_window`` bars have been seen, and while any bar of
  that window has volume 0: a feed that reports no volume (FX bars from Yahoo always have
  volume 0) or has empty minutes gives no baseline to spike against, so the rule neither
  fires nor divides by zero
- ``macd_cross_up`` / ``macd_cross_down``: macd > signal / macd < signal (value: macd,
  threshold: signal)
- ``bollinger_breakout_up`` / ``bollinger_breakout_down``: close > upper / close < lower band
  (value: close, threshold: the band)

Firing. A rule fires on the bar where its condition *starts*: false at the previous
evaluation, true at this one; never again while it holds. A condition whose inputs are
missing (indicator warming up, or not emitted this bar under a calculation frequency) is
not evaluated and keeps its previous truth value, so a crossing is judged between
consecutive evaluated bars. The first evaluation only sets the baseline: a symbol whose
RSI is already 85 when it comes out of warm-up raises nothing until RSI drops back and
crosses again. After firing, a rule stays silent for ``cooldown_bars`` bars (per symbol,
per rule): a crossing inside that span is dropped, not postponed.

Thresholds per interval. A 2 % move is news on a 1-minute bar and an ordinary day on a daily
one, so ``price_change_threshold`` and ``volatility_threshold`` depend on the interval's class
(:func:`interval_class`: ``minute`` below 1 h, ``hour`` below 1 d, ``day`` below 1 week,
``week`` from a week up). :class:`AlertConfig` holds the minute values and
``interval_thresholds`` for the others; :meth:`AlertConfig.for_interval` gives the config a
series of that interval uses. Defaults (:data:`DEFAULT_INTERVAL_THRESHOLDS`), sized on a
large US stock with ~30 % annual volatility, i.e. a typical bar move of ~0.1 % per minute,
~0.7 % per hour, ~2 % per day, ~4 % per week:

======  ==================  ====================
class   price change        volatility (per bar)
======  ==================  ====================
minute  0.02 (~20 sigma)    0.005 (~5x typical)
hour    0.03 (~4 sigma)     0.015 (~2x)
day     0.05 (~2.5 sigma)   0.03  (~1.5x)
week    0.10 (~2.5 sigma)   0.06  (~1.5x)
======  ==================  ====================

Alert ids come from :func:`stockpipe.common.messages.alert_id` (symbol, interval, ts,
rule), so a replay produces the same ids and the database keeps one row. The state is a
few numbers per rule plus a ring of ``volume_window`` volumes: replaying the same bars from
the same first bar rebuilds it exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from stockpipe.common.messages import INDICATOR_FIELDS, Alert, Bar, Indicators, alert_id, interval_length

__all__ = ["RULES", "INTERVAL_CLASSES", "DEFAULT_INTERVAL_THRESHOLDS", "AlertConfig", "AlertState",
           "interval_class"]

RULES = (
    "rsi_overbought",
    "rsi_oversold",
    "volatility_high",
    "price_change",
    "volume_spike",
    "macd_cross_up",
    "macd_cross_down",
    "bollinger_breakout_up",
    "bollinger_breakout_down",
)

INTERVAL_CLASSES = ("minute", "hour", "day", "week")
# Class: (price_change_threshold, volatility_threshold); see the module doc for the reasons.
DEFAULT_INTERVAL_THRESHOLDS: dict[str, tuple[float, float]] = {
    "minute": (0.02, 0.005),
    "hour": (0.03, 0.015),
    "day": (0.05, 0.03),
    "week": (0.10, 0.06),
}


def interval_class(interval: str) -> str:
    """``minute`` (< 1 h), ``hour`` (< 1 d), ``day`` (< 1 week) or ``week`` for an interval."""
    length = interval_length(interval)
    if length < timedelta(hours=1):
        return "minute"
    if length < timedelta(days=1):
        return "hour"
    return "day" if length < timedelta(weeks=1) else "week"


_RSI, _SMA_S, _SMA_L, _EMA_S, _EMA_L, _BB_U, _BB_M, _BB_L, _MACD, _SIGNAL, _HIST, _VOL = range(12)


@dataclass(frozen=True, kw_only=True)
class AlertConfig:
    """Thresholds of the alert rules. The defaults are sized for 1-minute bars (the live feed).

    - rsi 70 / 30: Wilder's own overbought / oversold levels, the ones every chart shows.
    - volatility_threshold 0.005: per-bar std dev of log returns. A large US stock moves
      ~0.05-0.1 % per minute (~30 % a year); 0.5 % per minute for 20 minutes (~160 %
      annualised) is a rare, violent session. For daily bars use ~0.03.
    - price_change_threshold 0.02: a 2 % move within one minute is news-driven; it is also a
      notable daily move.
    - volume_change_threshold 3.0 over volume_window 20: three times the last 20 bars'
      mean volume marks a spike without firing on the ordinary open/close surges (~2x).
    - cooldown_bars 5: crossings that flap around a level within 5 bars (minutes) alert once.
    - interval_thresholds: (class, price change, volatility) for the hour, day and week
      classes; ``for_interval`` applies them (module doc: the table and the reasons).
    """

    rsi_overbought: float = 70.0
    rsi_oversold: float = 30.0
    volatility_threshold: float = 0.005
    price_change_threshold: float = 0.02
    volume_change_threshold: float = 3.0
    volume_window: int = 20
    cooldown_bars: int = 5
    rules: tuple[str, ...] = RULES
    interval_thresholds: tuple[tuple[str, float, float], ...] = tuple(
        (c, *DEFAULT_INTERVAL_THRESHOLDS[c]) for c in INTERVAL_CLASSES[1:])

    def __post_init__(self) -> None:
        for entry in self.interval_thresholds:
            if len(entry) != 3 or entry[0] not in INTERVAL_CLASSES[1:]:
                raise ValueError(f"interval_thresholds entries are (class, price change, volatility) with a "
                                 f"class in {INTERVAL_CLASSES[1:]}, got {entry!r}")
            for value in entry[1:]:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                    raise ValueError(f"thresholds of {entry[0]} bars must be finite numbers > 0, got {value!r}")
        for name in ("rsi_overbought", "rsi_oversold", "volatility_threshold",
                     "price_change_threshold", "volume_change_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0 < self.rsi_oversold < self.rsi_overbought < 100:
            raise ValueError(f"need 0 < rsi_oversold ({self.rsi_oversold}) < rsi_overbought "
                             f"({self.rsi_overbought}) < 100")
        for name in ("volatility_threshold", "price_change_threshold", "volume_change_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name, minimum in (("volume_window", 1), ("cooldown_bars", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        unknown = set(self.rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown rules {sorted(unknown)}; known: {', '.join(RULES)}")


    def for_interval(self, interval: str) -> AlertConfig:
        """This config with the price-change and volatility thresholds of ``interval``'s class."""
        return _for_class(self, interval_class(interval))


@functools.lru_cache(maxsize=64)
def _for_class(config: AlertConfig, cls: str) -> AlertConfig:
    for name, price_change, volatility in config.interval_thresholds:
        if name == cls:
            return dataclasses.replace(config, price_change_threshold=price_change,
                                       volatility_threshold=volatility)
    return config  # minute bars, or a class left out: the config's own thresholds


def _price(x: float) -> str:
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.6g}"


def _indicator(x: float) -> str:
    return f"{x:.4g}"


class AlertState:
    """One symbol's alert rules (for one interval); see the module doc for the semantics."""

    __slots__ = (
        "_count",
        "_last_fired",
        "_prev_close",
        "_rules",
        "_state",
        "_vol_pos",
        "_vol_sum",
        "_vol_zeros",
        "_volumes",
        "config",
    )

    def __init__(self, config: AlertConfig | None = None) -> None:
        self.config = config if config is not None else AlertConfig()
        self._rules = tuple(r for r in RULES if r in self.config.rules)  # fixed order: RULES
        self._count = 0                    # bars seen
        self._prev_close: float | None = None
        self._volumes = [0] * self.config.volume_window
        self._vol_pos = 0
        self._vol_sum = 0                  # integers: the rolling sum is exact
        self._vol_zeros = 0                # bars with volume 0 in the window (warm-up slots excluded)
        self._state: dict[str, int] = {}   # last evaluated condition per rule (0/1, or -1/0/1)
        self._last_fired: dict[str, int] = {}  # bar index of the last alert per rule

    @property
    def count(self) -> int:
        """Bars fed so far."""
        return self._count

    def update(self, bar: Bar, values: Sequence[float | None] | Indicators) -> list[Alert]:
        """Evaluate the rules on one bar; return its alerts (usually none), in RULES order.

        ``values``: the 12 indicator values of this bar in ``INDICATOR_FIELDS`` order (what
        :meth:`IndicatorState.update` returns), or an :class:`Indicators` message.
        """
        if isinstance(values, Indicators):
            values = tuple(getattr(values, f) for f in INDICATOR_FIELDS)
        cfg = self.config
        index = self._count
        self._count = index + 1
        close = bar.close
        prev_close, self._prev_close = self._prev_close, close

        # Volume baseline: mean of the volume_window bars before this one (exact int sum);
        # none while a bar of that window has volume 0 (module doc).
        window = cfg.volume_window
        baseline = self._vol_sum / window if index >= window and not self._vol_zeros else None
        pos = self._vol_pos
        volume = bar.volume
        if index >= window and not self._volumes[pos]:
            self._vol_zeros -= 1  # a zero volume leaves the window
        if not volume:
            self._vol_zeros += 1
        self._vol_sum += volume - self._volumes[pos]
        self._volumes[pos] = volume
        self._vol_pos = 0 if pos + 1 == window else pos + 1

        alerts: list[Alert] = []
        for rule in self._rules:
            evaluated = self._evaluate(rule, bar, values, prev_close, baseline)
            if evaluated is None:
                continue  # inputs missing: keep the previous truth value
            holds, value, threshold = evaluated
            was = self._state.get(rule)
            self._state[rule] = holds
            if not holds or was is None or holds == was:
                continue  # not a start (or the first evaluation: baseline only)
            last = self._last_fired.get(rule)
            if last is not None and index - last <= cfg.cooldown_bars:
                continue
            self._last_fired[rule] = index
            alerts.append(self.alert(rule, bar, value, threshold))
        return alerts

    def alert(self, rule: str, bar: Bar, value: float, threshold: float) -> Alert:
        """The Alert ``rule`` raises on ``bar``."""
        return Alert(
            id=alert_id(bar.symbol, bar.interval, bar.ts, rule), symbol=bar.symbol,
            interval=bar.interval, ts=bar.ts, rule=rule, value=value, threshold=threshold,
            message=self._message(rule, bar, value, threshold),
        )

    def _evaluate(self, rule: str, bar: Bar, v: Sequence[float | None], prev_close: float | None,
                  baseline: float | None) -> tuple[int, float, float] | None:
        """(condition state, value, threshold) or None when an input is missing.

        The state is truthy while the condition holds: a bool, or for price_change the sign
        of a move beyond the threshold (0 within it)."""
        cfg = self.config
        if rule == "rsi_overbought":
            rsi = v[_RSI]
            return None if rsi is None else (rsi > cfg.rsi_overbought, rsi, cfg.rsi_overbought)
        if rule == "rsi_oversold":
            rsi = v[_RSI]
            return None if rsi is None else (rsi < cfg.rsi_oversold, rsi, cfg.rsi_oversold)
        if rule == "volatility_high":
            vol = v[_VOL]
            return None if vol is None else (vol > cfg.volatility_threshold, vol, cfg.volatility_threshold)
        if rule == "price_change":
            if prev_close is None:
                return None
            change = bar.close / prev_close - 1.0
            limit = cfg.price_change_threshold
            return (change > limit) - (change < -limit), change, limit
        if rule == "volume_spike":
            if baseline is None or baseline <= 0:
                return None
            ratio = bar.volume / baseline
            return ratio > cfg.volume_change_threshold, ratio, cfg.volume_change_threshold
        if rule in ("macd_cross_up", "macd_cross_down"):
            macd, signal = v[_MACD], v[_SIGNAL]
            if macd is None or signal is None:
                return None
            return (macd > signal if rule == "macd_cross_up" else macd < signal), macd, signal
        if rule == "bollinger_breakout_up":
            upper = v[_BB_U]
            return None if upper is None else (bar.close > upper, bar.close, upper)
        if rule == "bollinger_breakout_down":
            lower = v[_BB_L]
            return None if lower is None else (bar.close < lower, bar.close, lower)
        raise AssertionError(f"unhandled rule {rule}")  # RULES and this function disagree

    def _message(self, rule: str, bar: Bar, value: float, threshold: float) -> str:
        s = bar.symbol
        if rule == "rsi_overbought":
            return f"{s} RSI {value:.1f} crossed above {threshold:g}"
        if rule == "rsi_oversold":
            return f"{s} RSI {value:.1f} crossed below {threshold:g}"
        if rule == "volatility_high":
            return f"{s} volatility {value:.2%} per bar rose above {threshold:.2%}"
        if rule == "price_change":
            return f"{s} close {_price(bar.close)} moved {value:+.2%} in one bar (threshold ±{threshold:.2%})"
        if rule == "volume_spike":
            return (f"{s} volume {bar.volume:,} is {value:.1f}x its {self.config.volume_window}-bar "
                    f"average (threshold {threshold:g}x)")
        if rule == "macd_cross_up":
            return f"{s} MACD {_indicator(value)} crossed above its signal line {_indicator(threshold)}"
        if rule == "macd_cross_down":
            return f"{s} MACD {_indicator(value)} crossed below its signal line {_indicator(threshold)}"
        if rule == "bollinger_breakout_up":
            return f"{s} close {_price(value)} broke above the upper Bollinger band {_price(threshold)}"
        return f"{s} close {_price(value)} broke below the lower Bollinger band {_price(threshold)}"
