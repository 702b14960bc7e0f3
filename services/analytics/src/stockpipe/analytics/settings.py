"""Settings of the analytics service (indicator periods, frequencies, alert thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

from stockpipe.analytics.alerts import DEFAULT_INTERVAL_THRESHOLDS as _DEFAULTS
from stockpipe.analytics.alerts import RULES, AlertConfig
from stockpipe.analytics.indicators import IndicatorConfig
from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, setting

__all__ = ["AnalyticsSettings"]

_RULE = "|".join(RULES)
_MAX_PERIOD = 100_000  # TA-Lib's own bound on every period


@dataclass(frozen=True, kw_only=True)
class AnalyticsSettings(CommonSettings):
    service_name: str = setting("analytics", help="name in logs, client ids and consumer groups")
    analytics_group_id: str = setting("stockpipe-analytics", help="Kafka consumer group of analytics")
    analytics_batch_size: int = setting(5000, ge=1, le=100_000, help="max bars per processing batch")
    # A bar waits for its batch up to this long: 10 ms keeps latency low; larger batches
    # come by themselves under load (ANALYTICS_BATCH_SIZE bars arrive sooner).
    analytics_batch_timeout: float = setting(0.01, gt=0, le=10, help="seconds to wait for a batch to fill")

    rsi_period: int = setting(14, ge=2, le=_MAX_PERIOD, help="RSI period (Wilder)")
    sma_short_period: int = setting(20, ge=2, le=_MAX_PERIOD, help="short SMA period")
    sma_long_period: int = setting(50, ge=2, le=_MAX_PERIOD, help="long SMA period")
    ema_short_period: int = setting(12, ge=2, le=_MAX_PERIOD, help="short EMA period")
    ema_long_period: int = setting(26, ge=2, le=_MAX_PERIOD, help="long EMA period")
    bollinger_period: int = setting(20, ge=2, le=_MAX_PERIOD, help="Bollinger band period")
    bollinger_std: float = setting(2.0, gt=0, le=10, help="Bollinger band width in population standard deviations")
    macd_fast: int = setting(12, ge=2, le=_MAX_PERIOD, help="MACD fast EMA period")
    macd_slow: int = setting(26, ge=3, le=_MAX_PERIOD, help="MACD slow EMA period")
    macd_signal: int = setting(9, ge=1, le=_MAX_PERIOD, help="MACD signal EMA period")
    volatility_period: int = setting(20, ge=2, le=_MAX_PERIOD, help="volatility window: population std dev of this many log returns")

    rsi_calc_frequency: int = setting(1, ge=1, help="emit RSI on every k-th bar (1 = every bar)")
    sma_calc_frequency: int = setting(1, ge=1, help="emit the SMAs on every k-th bar")
    ema_calc_frequency: int = setting(1, ge=1, help="emit the EMAs on every k-th bar")
    bollinger_calc_frequency: int = setting(1, ge=1, help="emit the Bollinger bands on every k-th bar")
    macd_calc_frequency: int = setting(1, ge=1, help="emit MACD on every k-th bar")
    volatility_calc_frequency: int = setting(1, ge=1, help="emit volatility on every k-th bar")

    rsi_overbought: float = setting(70.0, gt=0, le=100, help="RSI level whose upward crossing alerts")
    rsi_oversold: float = setting(30.0, ge=0, le=100, help="RSI level whose downward crossing alerts")
    # Per interval class (alerts.py: the table of defaults and why): a 2 % move is news on a
    # 1-minute bar and an ordinary day on a daily one.
    volatility_threshold: float = setting(_DEFAULTS["minute"][1], gt=0, le=10,
                                          help="per-bar volatility above which an alert fires (bars < 1 h)")
    volatility_threshold_hourly: float = setting(_DEFAULTS["hour"][1], gt=0, le=10,
                                                 help="the same for bars of 1 h up to < 1 d")
    volatility_threshold_daily: float = setting(_DEFAULTS["day"][1], gt=0, le=10,
                                                help="the same for bars of 1 d up to < 1 week")
    volatility_threshold_weekly: float = setting(_DEFAULTS["week"][1], gt=0, le=10,
                                                 help="the same for weekly and monthly bars")
    price_change_threshold: float = setting(_DEFAULTS["minute"][0], gt=0, le=1000,
                                            help="bar-to-bar close change (fraction) that alerts (bars < 1 h)")
    price_change_threshold_hourly: float = setting(_DEFAULTS["hour"][0], gt=0, le=1000,
                                                   help="the same for bars of 1 h up to < 1 d")
    price_change_threshold_daily: float = setting(_DEFAULTS["day"][0], gt=0, le=1000,
                                                  help="the same for bars of 1 d up to < 1 week")
    price_change_threshold_weekly: float = setting(_DEFAULTS["week"][0], gt=0, le=1000,
                                                   help="the same for weekly and monthly bars")
    volume_change_threshold: float = setting(3.0, gt=0, le=1e6, help="volume above this multiple of its rolling mean alerts")
    volume_window: int = setting(20, ge=1, help="bars in the rolling mean volume")
    alert_cooldown_bars: int = setting(5, ge=0, help="bars a rule stays silent per symbol after firing")
    alert_rules: tuple[str, ...] = setting(RULES, help="rules enabled, comma separated", pattern=_RULE)

    def __post_init__(self) -> None:
        # The combinations no single variable's range can check: the error names the variable
        # to change (the second of the pair, the one documented relative to the first).
        if self.macd_fast >= self.macd_slow:
            raise SettingsError("MACD_SLOW", str(self.macd_slow),
                                f"a period longer than MACD_FAST ({self.macd_fast})")
        if self.rsi_oversold >= self.rsi_overbought:
            raise SettingsError("RSI_OVERSOLD", f"{self.rsi_oversold:g}",
                                f"a level below RSI_OVERBOUGHT ({self.rsi_overbought:g})")
        if self.rsi_oversold <= 0:
            raise SettingsError("RSI_OVERSOLD", f"{self.rsi_oversold:g}", "a number > 0")
        if self.rsi_overbought >= 100:
            raise SettingsError("RSI_OVERBOUGHT", f"{self.rsi_overbought:g}", "a number < 100")

    def indicator_config(self) -> IndicatorConfig:
        """The indicator periods and frequencies (every combination checked at load)."""
        return IndicatorConfig(
            rsi_period=self.rsi_period, sma_short=self.sma_short_period, sma_long=self.sma_long_period,
            ema_short=self.ema_short_period, ema_long=self.ema_long_period,
            bollinger_period=self.bollinger_period, bollinger_std=self.bollinger_std,
            macd_fast=self.macd_fast, macd_slow=self.macd_slow, macd_signal=self.macd_signal,
            volatility_period=self.volatility_period,
            rsi_frequency=self.rsi_calc_frequency,
            sma_short_frequency=self.sma_calc_frequency, sma_long_frequency=self.sma_calc_frequency,
            ema_short_frequency=self.ema_calc_frequency, ema_long_frequency=self.ema_calc_frequency,
            bollinger_frequency=self.bollinger_calc_frequency, macd_frequency=self.macd_calc_frequency,
            volatility_frequency=self.volatility_calc_frequency,
        )

    def alert_config(self) -> AlertConfig:
        """The alert thresholds, per interval class (every combination checked at load)."""
        return AlertConfig(
            rsi_overbought=self.rsi_overbought, rsi_oversold=self.rsi_oversold,
            volatility_threshold=self.volatility_threshold, price_change_threshold=self.price_change_threshold,
            volume_change_threshold=self.volume_change_threshold, volume_window=self.volume_window,
            cooldown_bars=self.alert_cooldown_bars, rules=self.alert_rules,
            interval_thresholds=(
                ("hour", self.price_change_threshold_hourly, self.volatility_threshold_hourly),
                ("day", self.price_change_threshold_daily, self.volatility_threshold_daily),
                ("week", self.price_change_threshold_weekly, self.volatility_threshold_weekly),
            ),
        )
