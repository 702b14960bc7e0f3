"""Settings of the forecaster (model orders, schedules, evaluation, the fit pool)."""

from __future__ import annotations

from dataclasses import dataclass

from stockpipe.common.errors import SettingsError
from stockpipe.common.settings import CommonSettings, setting

__all__ = ["ForecasterSettings"]


@dataclass(frozen=True, kw_only=True)
class ForecasterSettings(CommonSettings):
    service_name: str = setting("forecaster", help="name in logs, client ids and consumer groups")
    forecaster_group_id: str = setting("stockpipe-forecaster", help="Kafka consumer group of the forecaster")
    forecaster_batch_size: int = setting(5000, ge=1, le=100_000, help="max indicator messages per batch")
    # Forecasts are not latency-critical to the millisecond; 50 ms batches keep polling cheap.
    forecaster_batch_timeout: float = setting(0.05, gt=0, le=10, help="seconds to wait for a batch to fill")
    # Batches whose forecasts are still being fitted while the loop polls on: consuming
    # never waits for a fit (a newer fit of a series replaces a queued older one, so the
    # work behind these batches stays bounded by about one fit per series).
    forecaster_max_inflight: int = setting(1000, ge=1, le=100_000, help="batches consumed ahead of their forecasts")
    forecaster_stall_timeout: float = setting(600.0, gt=0,
                                              help="seconds a batch may wait for its fits before /healthz fails")
    forecaster_workers: int = setting(0, ge=0, le=256,
                                      help="fit worker processes (0 = the CPUs this process may use)")
    forecast_history: int = setting(1000, ge=20, le=100_000,
                                    help="bars kept per series (the longest window any model sees)")

    arima_max_p: int = setting(5, ge=0, le=10, help="largest AR order the auto-ARIMA search tries")
    arima_max_d: int = setting(2, ge=0, le=2, help="largest order of differencing")
    arima_max_q: int = setting(5, ge=0, le=10, help="largest MA order the auto-ARIMA search tries")
    arima_window: int = setting(500, ge=20, le=100_000, help="bars each auto-ARIMA fit sees (the latest ones)")
    arima_forecast_steps: int = setting(5, ge=1, le=500, help="bars ahead each forecast run predicts")
    arima_confidence_level: float = setting(0.95, gt=0, le=0.999, help="level of the forecast intervals (0-1)")
    arima_min_observations: int = setting(100, ge=10, help="bars a series needs before its first ARIMA fit")
    # Every 20 bars: at 1m bars a fresh forecast each 20 minutes per symbol, and with 500 symbols
    # 25 fits a minute, well within two cores at ~0.1-0.5 s per fit.
    forecast_every_bars: int = setting(20, ge=1, help="bars between two forecast runs (ARIMA refits at each)")

    ml_window_size: int = setting(10, ge=1, le=200, help="past log returns in the regression's features")
    prediction_horizon: int = setting(1, ge=1, le=500, help="bars ahead the regression predicts the log return of")
    min_training_samples: int = setting(200, ge=10, help="samples a series needs before the regression is trained")
    retrain_frequency: int = setting(100, ge=1, help="bars between two trainings of the regression")
    test_size: float = setting(0.2, gt=0, le=0.5, help="fraction of samples held out (the latest, in time order)")
    random_state: int = setting(42, ge=0, help="seed of every random step (ordinary least squares has none)")

    def check(self) -> ForecasterSettings:
        """Combinations a single field cannot express; raises SettingsError (exit 2)."""
        if self.arima_min_observations > self.forecast_history:
            raise SettingsError("ARIMA_MIN_OBSERVATIONS", str(self.arima_min_observations),
                                f"at most FORECAST_HISTORY ({self.forecast_history})")
        if self.arima_window > self.forecast_history:
            raise SettingsError("ARIMA_WINDOW", str(self.arima_window),
                                f"at most FORECAST_HISTORY ({self.forecast_history})")
        need = self.min_training_samples + self.ml_window_size + self.prediction_horizon
        if need > self.forecast_history:
            raise SettingsError("MIN_TRAINING_SAMPLES", str(self.min_training_samples),
                                f"at most FORECAST_HISTORY - ML_WINDOW_SIZE - PREDICTION_HORIZON "
                                f"({self.forecast_history - self.ml_window_size - self.prediction_horizon})")
        if round(self.min_training_samples * self.test_size) < 1:
            raise SettingsError("TEST_SIZE", str(self.test_size),
                                "a fraction leaving at least one held-out sample of MIN_TRAINING_SAMPLES")
        return self
