"""The forecasting models, pure functions of arrays (no Kafka, no database).

Every model is a JSON-able ``params`` dict (what the registry stores, never a pickle) and a
forecast function of ``params`` and the data. A fit returns params; forecasts are always made
from params, so a model loaded from the registry forecasts exactly like the fit that made it.

- ``arima``: statsforecast's ``auto_arima_f`` (the Hyndman-Khandakar stepwise search, never
  an exhaustive grid, bounded by ARIMA_MAX_P/D/Q, p + q <= 5, AICc) on log prices. As in R's
  ``auto.arima`` on more than 150 points, the search compares candidates fitted by conditional
  sums of squares and refits the best by exact likelihood (statsforecast's ``AutoARIMA``
  model class turns that approximation off by default). Params: the order, the
  coefficients by name, sigma², whether a mean or drift is in. Forecasting re-runs the
  Kalman filter with every coefficient fixed (nothing is re-estimated) over the latest window.
  Each candidate is optimised by scipy's BFGS; statsforecast leaves its gradient to scipy's
  generic finite differences, whose bookkeeping was 60 % of a fit in cProfile, so
  :func:`_forward_gradient` hands scipy the very same forward differences (same steps, same
  arithmetic): the fits are bit for bit the same (tested), about 3x faster.
- ``naive``: the last value, with a random-walk interval (sigma of the log returns x sqrt(h)).
  Used for flat or degenerate series, labelled ``naive``.
- ``linreg``: ordinary least squares (scikit-learn) of the log return ``PREDICTION_HORIZON``
  bars ahead on the last ``ML_WINDOW_SIZE`` log returns and the bar's indicators.

Forecasts of log prices become prices by ``exp``: ``yhat`` is the median of the predicted
price, and ``lo``/``hi`` the bounds of its central interval at the level asked for.
"""

from __future__ import annotations

import contextvars
import math
import warnings
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from stockpipe.common.errors import StockpipeError
from stockpipe.common.messages import INDICATOR_FIELDS

__all__ = [
    "FitFailed",
    "Degenerate",
    "fit_arima",
    "arima_forecast",
    "naive_params",
    "naive_forecast",
    "forecast_log",
    "model_label",
    "FEATURE_NAMES",
    "features",
    "training_set",
    "fit_linreg",
    "linreg_predict",
]

Params = dict[str, Any]


class FitFailed(StockpipeError):
    """A fit that did not give a usable model (non-convergence, singular data)."""


class Degenerate(FitFailed):
    """A series a model cannot be fitted to (flat, too short): the naive forecast stands in."""


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _check_series(log_y: np.ndarray, min_len: int = 10) -> None:
    if len(log_y) < min_len:
        raise Degenerate(f"{len(log_y)} observations, need {min_len}")
    if not np.all(np.isfinite(log_y)):
        raise Degenerate("non-finite values")
    # Prices that never move (a halted symbol, a flat synthetic feed): no model to find.
    if float(np.ptp(log_y)) < 1e-12:
        raise Degenerate("flat series")


# ---------------------------------------------------------------------- ARIMA

# scipy's default absolute step for BFGS's finite differences (``scipy.optimize._optimize._epsilon``).
_EPS = float(np.sqrt(np.finfo(float).eps))
_FAST_GRADIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("stockpipe_fast_gradient", default=False)


def _forward_gradient(fun: Callable[..., float], eps: float) -> tuple[Callable[..., float], Callable[..., np.ndarray]]:
    """The gradient scipy's BFGS computes when given none (``approx_derivative``, '2-point',
    absolute step ``eps``, no bounds), step for step, without its per-call bookkeeping.

    Returns ``(fun, jac)`` to hand to scipy together: ``fun`` remembers its last value, so
    ``jac`` at the same point (BFGS asks for f and then the gradient at each point) reuses it
    as scipy reuses its f0, instead of evaluating the objective there once more.
    """
    last: list = [None, 0.0]  # the bytes of the last x fun was called at, and f(x)

    def remembering(x: np.ndarray, *args: Any) -> float:
        value = fun(x, *args)
        last[0], last[1] = x.tobytes(), value
        return value

    def jac(x: np.ndarray, *args: Any) -> np.ndarray:
        f0 = last[1] if x.tobytes() == last[0] else fun(x, *args)
        g = np.empty(x.size)
        for i in range(x.size):
            xi = x[i]
            h = eps
            if (xi + h) - xi == 0:  # scipy's fallback for a step lost in rounding
                h = _EPS * (1.0 if xi >= 0 else -1.0) * max(1.0, abs(xi))
            x1 = x.copy()
            x1[i] = xi + h
            g[i] = (fun(x1, *args) - f0) / ((xi + h) - xi)
        return g

    return remembering, jac


def _install_fast_gradient() -> None:
    """Route statsforecast.arima's ``minimize`` through :func:`_forward_gradient` while
    :data:`_FAST_GRADIENT` is set (only inside :func:`fit_arima`; anyone else calling
    statsforecast in the process gets it unchanged). Skipped if the module is not as expected."""
    import scipy.optimize
    import statsforecast.arima as sf_arima

    original = scipy.optimize.minimize
    if getattr(sf_arima, "minimize", None) is not original:
        return  # already installed, or a statsforecast that optimises otherwise

    def minimize(fun, x0, args=(), method=None, jac=None, **kw):
        if jac is None and method == "BFGS" and _FAST_GRADIENT.get():
            fun, jac = _forward_gradient(fun, (kw.get("options") or {}).get("eps", _EPS))
        return original(fun, x0, args=args, method=method, jac=jac, **kw)

    sf_arima.minimize = minimize


def fit_arima(log_y: np.ndarray, max_p: int, max_d: int, max_q: int, *, fast_gradient: bool = True) -> Params:
    """Auto-ARIMA (stepwise, AICc) on log prices; raises Degenerate or FitFailed.

    ``fast_gradient=False`` runs statsforecast exactly as shipped (the tests compare).
    """
    from statsforecast.arima import auto_arima_f  # import here: worker processes only pay it once

    _install_fast_gradient()
    y = np.asarray(log_y, dtype=np.float64)
    _check_series(y)
    token = _FAST_GRADIENT.set(fast_gradient)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible convergence problem" lines per candidate
            fit = auto_arima_f(y, max_p=max_p, max_d=max_d, max_q=max_q, start_p=min(2, max_p),
                               start_q=min(2, max_q), seasonal=False, period=1, stepwise=True)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError, FloatingPointError) as exc:
        raise FitFailed(f"auto-ARIMA: {exc}") from exc
    finally:
        _FAST_GRADIENT.reset(token)
    arma = fit["arma"]
    coef = {str(k): float(v) for k, v in fit["coef"].items()}
    sigma2 = float(fit["sigma2"])
    if fit.get("constant") or not all(map(math.isfinite, coef.values())) or not math.isfinite(sigma2):
        raise FitFailed("auto-ARIMA gave no finite model")
    params = {
        "kind": "arima",
        "order": [int(arma[0]), int(arma[5]), int(arma[1])],
        "coef": coef,
        "sigma2": sigma2,
        "mean": "intercept" in coef,
        "drift": "drift" in coef,
        "aicc": float(fit["aicc"]) if fit.get("aicc") is not None else None,
    }
    return params


def arima_forecast(params: Params, log_y: np.ndarray, steps: int, level: float) -> tuple[np.ndarray, ...]:
    """(mean, lo, hi) of log prices 1..steps ahead of ``log_y``'s last value, from fixed params."""
    from statsforecast.arima import Arima, forecast_arima

    y = np.asarray(log_y, dtype=np.float64)
    p, d, q = params["order"]
    coef = params["coef"]
    if len(y) <= d + 1:
        raise FitFailed(f"{len(y)} observations cannot carry an ARIMA with d={d}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if coef:
                model = Arima(y, order=(p, d, q), include_mean=params["mean"], include_drift=params["drift"],
                              fixed=np.array(list(coef.values()), dtype=np.float64), method="CSS-ML")
            else:  # ARIMA(0,d,0) without mean: nothing to estimate
                model = Arima(y, order=(p, d, q), include_mean=False, method="CSS-ML")
            model["sigma2"] = params["sigma2"]  # the fit's innovation variance, not the window's
            pct = round(level * 100, 6)
            out = forecast_arima(model, h=steps, level=[pct])
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError, FloatingPointError) as exc:
        raise FitFailed(f"ARIMA forecast: {exc}") from exc
    mean = np.asarray(out["mean"], dtype=np.float64)
    lo = np.asarray(out["lower"].iloc[:, 0], dtype=np.float64)
    hi = np.asarray(out["upper"].iloc[:, 0], dtype=np.float64)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise FitFailed("ARIMA forecast is not finite")
    return mean, lo, hi


# ---------------------------------------------------------------------- naive


def naive_params(log_y: np.ndarray) -> Params:
    """The random walk: sigma of the log returns (0 for a flat series)."""
    y = np.asarray(log_y, dtype=np.float64)
    r = np.diff(y[np.isfinite(y)])
    sigma = float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
    return {"kind": "naive", "sigma": sigma}


def naive_forecast(params: Params, log_y: np.ndarray, steps: int, level: float) -> tuple[np.ndarray, ...]:
    last = float(log_y[-1])
    h = np.arange(1, steps + 1, dtype=np.float64)
    half = _z(level) * params["sigma"] * np.sqrt(h)
    mean = np.full(steps, last)
    return mean, mean - half, mean + half


def forecast_log(params: Params, log_y: np.ndarray, steps: int, level: float) -> tuple[np.ndarray, ...]:
    """(mean, lo, hi) of log prices from an ``arima`` or ``naive`` params dict."""
    if params["kind"] == "naive":
        return naive_forecast(params, log_y, steps, level)
    return arima_forecast(params, log_y, steps, level)


def model_label(params: Params) -> str:
    """The ``model`` field of a forecast: ``arima(p,d,q)``, ``naive`` or ``linreg``."""
    if params["kind"] == "arima":
        return "arima({},{},{})".format(*params["order"])
    return params["kind"]


# ---------------------------------------------------------------------- linear regression

# Indicators enter scale-free: price-like ones as a ratio to the close, MACD lines relative to
# the close, RSI centred; volatility is already a log-return scale.
_PRICE_LIKE = {"sma_short", "sma_long", "ema_short", "ema_long", "bb_upper", "bb_middle", "bb_lower"}
_RELATIVE = {"macd", "macd_signal", "macd_hist"}


def FEATURE_NAMES(window: int) -> list[str]:  # noqa: N802 - reads as a constant table
    return [f"r_lag{i}" for i in range(window)] + list(INDICATOR_FIELDS)


def features(closes: np.ndarray, indicators: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows for every bar of a series, and which rows are complete.

    ``closes``: shape (n,), prices. ``indicators``: shape (n, 12) in INDICATOR_FIELDS order,
    NaN where a message had null. Nulls are carried forward from the latest value (an
    indicator emitted every k-th bar, ``*_CALC_FREQUENCY``); a row is complete once every
    indicator has had a value and ``window`` returns exist. Returns (X of shape (n, F), mask).
    """
    c = np.asarray(closes, dtype=np.float64)
    n = len(c)
    logc = np.log(c)
    r = np.full(n, np.nan)
    r[1:] = np.diff(logc)
    lags = np.full((n, window), np.nan)
    for i in range(window):
        lags[i:, i] = r[: n - i] if i else r
    ind = np.array(indicators, dtype=np.float64, copy=True).reshape(n, len(INDICATOR_FIELDS))
    # Forward fill per column (warm-up stays NaN, so those rows are not complete).
    for j in range(ind.shape[1]):
        col = ind[:, j]
        idx = np.where(np.isfinite(col), np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        filled = np.where(idx >= 0, col[np.maximum(idx, 0)], np.nan)
        ind[:, j] = filled
    for j, name in enumerate(INDICATOR_FIELDS):
        if name in _PRICE_LIKE:
            ind[:, j] = ind[:, j] / c - 1.0
        elif name in _RELATIVE:
            ind[:, j] = ind[:, j] / c
        elif name == "rsi":
            ind[:, j] = ind[:, j] / 100.0 - 0.5
    x = np.concatenate([lags, ind], axis=1)
    mask = np.all(np.isfinite(x), axis=1)
    return x, mask


def training_set(closes: np.ndarray, indicators: np.ndarray, window: int, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of complete rows whose target, the log return ``horizon`` bars later, is known."""
    x, mask = features(closes, indicators, window)
    logc = np.log(np.asarray(closes, dtype=np.float64))
    n = len(logc)
    y = np.full(n, np.nan)
    y[: n - horizon] = logc[horizon:] - logc[: n - horizon]
    ok = mask & np.isfinite(y)
    return x[ok], y[ok]


def fit_linreg(x: np.ndarray, y: np.ndarray, *, window: int, horizon: int, test_size: float,
               random_state: int) -> Params:
    """Least squares on the earlier samples, scored on the latest ``test_size`` (time order).

    The held-out score (MAE, RMSE and MASE against the naive zero-return forecast) is kept in
    the params; the model used afterwards is refitted on every sample. ``random_state`` is
    recorded: ordinary least squares has no random step.
    """
    from sklearn.linear_model import LinearRegression

    n = len(y)
    n_test = max(1, round(n * test_size))
    n_train = n - n_test
    if n_train < x.shape[1] // 2 + 2:
        raise Degenerate(f"{n} samples are too few for {x.shape[1]} features")
    if float(np.ptp(y)) < 1e-15:
        raise Degenerate("flat series")
    held = LinearRegression().fit(x[:n_train], y[:n_train])
    err = y[n_train:] - held.predict(x[n_train:])
    naive_mae = float(np.mean(np.abs(y[n_train:])))  # the naive forecast of a return is 0
    mae = float(np.mean(np.abs(err)))
    rmse = float(np.sqrt(np.mean(err ** 2)))
    full = LinearRegression().fit(x, y)
    resid = y - full.predict(x)
    # Interval width from the held-out errors (unseen data), never the in-sample fit.
    sigma = rmse if n_test >= 5 else float(np.std(resid, ddof=1))
    coef = [float(v) for v in full.coef_]
    if not (all(map(math.isfinite, coef)) and math.isfinite(float(full.intercept_)) and math.isfinite(sigma)):
        raise FitFailed("least squares gave non-finite coefficients")
    return {
        "kind": "linreg",
        "window": window,
        "horizon": horizon,
        "features": FEATURE_NAMES(window),
        "coef": coef,
        "intercept": float(full.intercept_),
        "sigma": sigma,
        "random_state": random_state,
        "holdout": {"n_train": n_train, "n_test": n_test, "mae": mae, "rmse": rmse,
                    "mase": mae / naive_mae if naive_mae > 0 else None,
                    "beats_naive": bool(naive_mae > 0 and mae < naive_mae)},
    }


def linreg_predict(params: Params, row: Sequence[float], level: float) -> tuple[float, float, float]:
    """(log return, lo, hi) ``horizon`` bars ahead from one feature row."""
    mean = float(np.dot(params["coef"], np.asarray(row, dtype=np.float64)) + params["intercept"])
    half = _z(level) * params["sigma"]
    return mean, mean - half, mean + half
