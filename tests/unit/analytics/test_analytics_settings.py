"""Analytics settings: every error names the variable that is wrong, with its value; thresholds per interval."""

from __future__ import annotations

import pytest

from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import describe, load

VARIABLES = {var for var, _, _ in describe(AnalyticsSettings)}


@pytest.mark.parametrize("env, variable, value, expected_text", [
    # Contradictions name the variable to change, not a pair or the class.
    ({"MACD_FAST": "30"}, "MACD_SLOW", "26", "longer than MACD_FAST (30)"),
    ({"MACD_SLOW": "12"}, "MACD_SLOW", "12", "longer than MACD_FAST (12)"),
    ({"RSI_OVERSOLD": "80"}, "RSI_OVERSOLD", "80", "below RSI_OVERBOUGHT (70)"),
    ({"RSI_OVERBOUGHT": "20"}, "RSI_OVERSOLD", "30", "below RSI_OVERBOUGHT (20)"),
    ({"RSI_OVERSOLD": "0"}, "RSI_OVERSOLD", "0", "> 0"),
    ({"RSI_OVERBOUGHT": "100"}, "RSI_OVERBOUGHT", "100", "< 100"),
    # Ranges the indicator engine has (TA-Lib's periods; finite bands) are the settings' own.
    ({"RSI_PERIOD": "200000"}, "RSI_PERIOD", "200000", "<= 100000"),
    ({"BOLLINGER_STD": "1e6"}, "BOLLINGER_STD", "1e6", "<= 10"),
    ({"PRICE_CHANGE_THRESHOLD_DAILY": "0"}, "PRICE_CHANGE_THRESHOLD_DAILY", "0", "> 0"),
    ({"VOLATILITY_THRESHOLD_WEEKLY": "inf"}, "VOLATILITY_THRESHOLD_WEEKLY", "inf", "finite"),
    ({"CLOCK_SKEW_TOLERANCE": "-5"}, "CLOCK_SKEW_TOLERANCE", "-5", ">= 0"),
])
def test_errors_name_the_wrong_variable_and_its_value(env: dict, variable: str, value: str,
                                                      expected_text: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(AnalyticsSettings, env)
    assert info.value.variable == variable and variable in VARIABLES
    assert f"{variable}={value!r}" in str(info.value) and expected_text in str(info.value)
    assert "\n" not in str(info.value)


def test_valid_settings_build_valid_configs() -> None:
    s = load(AnalyticsSettings, {"MACD_FAST": "5", "MACD_SLOW": "6", "RSI_OVERSOLD": "10", "RSI_OVERBOUGHT": "90",
                                 "RSI_PERIOD": "100000", "BOLLINGER_STD": "10"})
    assert s.indicator_config().macd_slow == 6 and s.alert_config().rsi_oversold == 10


def test_thresholds_per_interval_class_are_documented_defaults_and_overridable() -> None:
    cfg = load(AnalyticsSettings, {}).alert_config()
    got = {i: (cfg.for_interval(i).price_change_threshold, cfg.for_interval(i).volatility_threshold)
           for i in ("1m", "5m", "30m", "60m", "1h", "4h", "1d", "5d", "1wk", "1mo")}
    assert got == {"1m": (0.02, 0.005), "5m": (0.02, 0.005), "30m": (0.02, 0.005), "60m": (0.03, 0.015),
                   "1h": (0.03, 0.015), "4h": (0.03, 0.015), "1d": (0.05, 0.03), "5d": (0.05, 0.03),
                   "1wk": (0.1, 0.06), "1mo": (0.1, 0.06)}
    cfg = load(AnalyticsSettings, {"PRICE_CHANGE_THRESHOLD": "0.01", "PRICE_CHANGE_THRESHOLD_DAILY": "0.08",
                                   "VOLATILITY_THRESHOLD_HOURLY": "0.02"}).alert_config()
    assert cfg.for_interval("1m").price_change_threshold == 0.01
    assert cfg.for_interval("1d").price_change_threshold == 0.08
    assert cfg.for_interval("1h").volatility_threshold == 0.02
    assert cfg.for_interval("1d").rsi_overbought == cfg.rsi_overbought  # the rest is shared
