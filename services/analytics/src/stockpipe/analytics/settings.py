"""Settings of the analytics service (indicator periods, frequencies, alert thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

from stockpipe.analytics.alerts import RULES, AlertConfig
from stockpipe.analytics.indicators import IndicatorConfig
from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, setting

__all__ = ["AnalyticsSettings"]

_RULE = "|".join(RULES)


@dataclass(frozen=True, kw_only=True)
class AnalyticsSettings(CommonSettings):
    service_name: str = setting("analytics", help="name in logs, client ids and consumer groups")
    analytics_group_id: str = setting("stockpipe-analytics", help="Kafka consumer group of analytics")
    analytics_batch_size: int = setting(5000, ge=1, le=100_000, help="max bars per processing batch")
    # A bar waits for its batch up to this long: 10 ms keeps latency low; larger batches
    # come by themselves under load (ANALYTICS_BATCH_SIZE bars arrive sooner).
    analytics_batch_timeout: float = setting(0.01, gt=0, le=10, help="seconds to wait for a batch to fill")

    rsi_period: int = setting(14, ge=2, help="RSI period (Wilder)")
    sma_short_period: int = setting(20, ge=2, help="short SMA period")
    sma_long_period: int = setting(50, ge=2, help="long SMA period")
    ema_short_period: int = setting(12, ge=2, help="short EMA period")
    ema_long_period: int = setting(26, ge=2, help="long EMA period")
    bollinger_period: int = setting(20, ge=2, help="Bollinger band period")
    bollinger_std: float = setting(2.0, gt=0, help="Bollinger band width in population standard deviations")
    macd_fast: int = setting(12, ge=2, help="MACD fast EMA period")
    macd_slow: int = setting(26, ge=3, help="MACD slow EMA period")
    macd_signal: int = setting(9, ge=1, help="MACD signal EMA period")
    volatility_period: int = setting(20, ge=2, help="volatility window: population std dev of this many log returns")

    rsi_calc_frequency: int = setting(1, ge=1, help="emit RSI on every k-th bar (1 = every bar)")
    sma_calc_frequency: int = setting(1, ge=1, help="emit the SMAs on every k-th bar")
    ema_calc_frequency: int = setting(1, ge=1, help="emit the EMAs on every k-th bar")
    bollinger_calc_frequency: int = setting(1, ge=1, help="emit the Bollinger bands on every k-th bar")
    macd_calc_frequency: int = setting(1, ge=1, help="emit MACD on every k-th bar")
    volatility_calc_frequency: int = setting(1, ge=1, help="emit volatility on every k-th bar")

    rsi_overbought: float = setting(70.0, gt=0, le=100, help="RSI level whose upward crossing alerts")
    rsi_oversold: float = setting(30.0, ge=0, le=100, help="RSI level whose downward crossing alerts")
    volatility_threshold: float = setting(0.005, gt=0, help="per-bar volatility above which an alert fires")
    price_change_threshold: float = setting(0.02, gt=0, help="bar-to-bar close change (fraction) that alerts")
    volume_change_threshold: float = setting(3.0, gt=0, help="volume above this multiple of its rolling mean alerts")
    volume_window: int = setting(20, ge=1, help="bars in the rolling mean volume")
    alert_cooldown_bars: int = setting(5, ge=0, help="bars a rule stays silent per symbol after firing")
    alert_rules: tuple[str, ...] = setting(RULES, help="rules enabled, comma separated", pattern=_RULE)

    def indicator_config(self) -> IndicatorConfig:
        try:
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
        except ValueError as exc:  # combinations: e.g. MACD_FAST >= MACD_SLOW
            raise SettingsError("MACD_FAST/MACD_SLOW", f"{self.macd_fast}/{self.macd_slow}", str(exc)) from None

    def alert_config(self) -> AlertConfig:
        try:
            return AlertConfig(
                rsi_overbought=self.rsi_overbought, rsi_oversold=self.rsi_oversold,
                volatility_threshold=self.volatility_threshold, price_change_threshold=self.price_change_threshold,
                volume_change_threshold=self.volume_change_threshold, volume_window=self.volume_window,
                cooldown_bars=self.alert_cooldown_bars, rules=self.alert_rules,
            )
        except ValueError as exc:
            raise SettingsError("RSI_OVERSOLD/RSI_OVERBOUGHT", f"{self.rsi_oversold}/{self.rsi_overbought}",
                                str(exc)) from None
