"""Benchmark: the forecaster's auto-ARIMA against its peers on the same series (not a test).

Series (500 points each, seeded): random-walk-like prices (geometric Brownian motion, 1 %
per bar) and prices whose log follows a stationary ARMA process (mixed AR/MA orders). On
each, for every method:

- fit time: one fit on all 500 points (median over the series of a kind);
- MASE, 1 and ``STEPS`` bars ahead, by rolling-origin evaluation: refit on the first
  ``origin`` points, forecast, score against the bars that follow, for origins 440, 460
  and 480 (the forecaster's own :func:`stockpipe.forecaster.evaluation.backtest`, so MASE
  is MAE / naive last-value MAE on the same targets);

methods: this forecaster (statsforecast's stepwise auto-ARIMA on log prices, forecast from
its stored params: what the service runs), statsforecast's ``AutoARIMA`` model on prices,
``pmdarima.auto_arima`` (stepwise) on prices, and the naive last value. Then the wall time
for the service's fit pool (one worker per CPU this process may use) to refit 100 series.

BLAS is pinned to one thread (``OPENBLAS_NUM_THREADS=1``; the Makefile exports it too). The
machine is shared: the load average at start and end is recorded next to the figures.

    .venv/bin/python bench/forecast.py [--series 4] [--quick]

(4 series of each kind and 3 origins by default: pmdarima takes seconds per fit on this
shared machine, and the whole run must end in minutes.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (DESIGN.md facts)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

from stockpipe.forecaster.evaluation import backtest
from stockpipe.forecaster.models import naive_forecast, naive_params
from stockpipe.forecaster.pool import FitPool, arima_task, cpu_budget

RESULTS = Path(__file__).resolve().parent / "results" / "forecast.json"
N = 500
STEPS = 5
LEVEL = 0.95
MAX_P = MAX_Q = 5
MAX_D = 2


def random_walks(k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [float(rng.uniform(20, 500)) * np.exp(np.cumsum(rng.normal(0.0, 0.01, N))) for _ in range(k)]


def arma_prices(k: int, seed: int) -> list[np.ndarray]:
    """exp of a stationary ARMA(p, q) around log(100), orders and coefficients varied per series."""
    from statsmodels.tsa.arima_process import arma_generate_sample

    rng = np.random.default_rng(seed)
    specs = [([0.7], []), ([0.5, -0.3], []), ([], [0.6]), ([0.6], [0.3]), ([0.8, -0.2], [0.4])]
    out = []
    for i in range(k):
        ar, ma = specs[i % len(specs)]
        x = arma_generate_sample(np.r_[1, -np.array(ar)], np.r_[1, np.array(ma)], N + 100, scale=0.01,
                                 distrvs=rng.standard_normal)[100:]
        out.append(100.0 * np.exp(x))
    return out


# --- methods: history (prices) -> (yhat, lo, hi) in prices for 1..STEPS -----------------------------

def stockpipe_forecaster(history: np.ndarray):
    logs = np.log(history)
    r = arima_task(logs, MAX_P, MAX_D, MAX_Q, STEPS, LEVEL, None, None)
    return np.exp(r["mean"]), np.exp(r["lo"]), np.exp(r["hi"])


def statsforecast_autoarima(history: np.ndarray):
    from statsforecast.models import AutoARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoARIMA(max_p=MAX_P, max_q=MAX_Q, max_d=MAX_D, seasonal=False).fit(history)
        out = model.predict(h=STEPS, level=[int(LEVEL * 100)])
    return out["mean"], out[f"lo-{int(LEVEL * 100)}"], out[f"hi-{int(LEVEL * 100)}"]


def pmdarima_auto_arima(history: np.ndarray):
    import pmdarima

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pmdarima.auto_arima(history, max_p=MAX_P, max_q=MAX_Q, max_d=MAX_D, seasonal=False,
                                    stepwise=True, suppress_warnings=True, error_action="ignore")
        mean, conf = model.predict(n_periods=STEPS, return_conf_int=True, alpha=1 - LEVEL)
    return np.asarray(mean), conf[:, 0], conf[:, 1]


def naive(history: np.ndarray):
    logs = np.log(history)
    mean, lo, hi = naive_forecast(naive_params(logs), logs, STEPS, LEVEL)
    return np.exp(mean), np.exp(lo), np.exp(hi)


METHODS = {
    "stockpipe forecaster (statsforecast stepwise auto-ARIMA on log prices)": stockpipe_forecaster,
    "statsforecast 2.1 AutoARIMA (prices)": statsforecast_autoarima,
    "pmdarima auto_arima, stepwise (prices)": pmdarima_auto_arima,
    "naive last value": naive,
}


def evaluate(series: list[np.ndarray], fn, origins: range) -> dict:
    fit_times = []
    mase = {1: [], STEPS: []}
    coverage = {1: [], STEPS: []}
    for y in series:
        start = time.perf_counter()
        fn(y)
        fit_times.append(time.perf_counter() - start)
        # Rolling origin: refit at each origin on the points before it (backtest calls fn per origin).
        m = backtest(y[: origins.stop + STEPS], fn, start=origins.start, every=origins.step, steps=STEPS,
                     level=LEVEL)
        for h in (1, STEPS):
            s = m["steps"][str(h)]
            mase[h].append(s["mase"])
            coverage[h].append(s["coverage"])
    # Pooled over series: mean of per-series MASE (each series scaled by its own naive error).
    return {
        "fit_seconds_median": statistics.median(fit_times),
        "fit_seconds_mean": statistics.fmean(fit_times),
        "mase_1": statistics.fmean(mase[1]),
        f"mase_{STEPS}": statistics.fmean(mase[STEPS]),
        "coverage_1": statistics.fmean(coverage[1]),
        f"coverage_{STEPS}": statistics.fmean(coverage[STEPS]),
    }


def refit_wall_time(series: list[np.ndarray]) -> dict:
    workers = cpu_budget()
    pool = FitPool(workers)
    try:
        # Warm the workers (imports) so the figure is the refit, not the start-up.
        done = []
        for _ in range(workers):
            pool.submit(arima_task, (np.log(series[0]), 1, 1, 1, 1, LEVEL, None, None), done.append, done.append)
        while len(done) < workers:
            time.sleep(0.01)
        results: list = []
        start = time.perf_counter()
        for y in series:
            pool.submit(arima_task, (np.log(y), MAX_P, MAX_D, MAX_Q, STEPS, LEVEL, None, None), results.append,
                        results.append)
        while len(results) < len(series):
            time.sleep(0.005)
        wall = time.perf_counter() - start
    finally:
        pool.close()
    failed = sum(1 for r in results if not isinstance(r, dict))
    return {"series": len(series), "workers": workers, "wall_seconds": wall, "failed": failed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=4, help="series of each kind (default 4)")
    ap.add_argument("--quick", action="store_true", help="2 series of each kind, 2 origins, 20 refits")
    args = ap.parse_args()
    k = 2 if args.quick else args.series
    origins = range(440, 481, 40) if args.quick else range(440, 481, 20)
    load_start = os.getloadavg()
    kinds = {"random walk": random_walks(k, 1), "ARMA": arma_prices(k, 2)}
    methods: dict = {}
    for name, fn in METHODS.items():
        methods[name] = {}
        for kind, series in kinds.items():
            print(f"{name} on {kind} ...", file=sys.stderr, flush=True)
            methods[name][kind] = evaluate(series, fn, origins)
    many = (random_walks(50, 3) + arma_prices(50, 4)) if not args.quick else random_walks(20, 3)
    refit = refit_wall_time(many)
    result = {
        "benchmark": "forecast",
        "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/forecast.py" + (" --quick" if args.quick
                                                                                   else f" --series {k}"),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu_budget": cpu_budget(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg(),
                    "note": "shared machine, loaded by other work while measured: figures are as measured"},
        "versions": {p: metadata.version(p) for p in ("statsforecast", "pmdarima", "numpy", "scipy", "pandas")},
        "points_per_series": N, "series_per_kind": k, "steps": STEPS, "level": LEVEL,
        "origins": list(origins), "max_p_d_q": [MAX_P, MAX_D, MAX_Q],
        "methods": methods,
        "refit": refit,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| method | kind | fit s (median) | MASE 1 | MASE {STEPS} | coverage 1 | coverage {STEPS} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, by_kind in methods.items():
        for kind, m in by_kind.items():
            print(f"| {name} | {kind} | {m['fit_seconds_median']:.3f} | {m['mase_1']:.3f} | {m[f'mase_{STEPS}']:.3f} "
                  f"| {m['coverage_1']:.2f} | {m[f'coverage_{STEPS}']:.2f} |")
    print(f"refit {refit['series']} series with {refit['workers']} workers: {refit['wall_seconds']:.1f} s wall "
          f"(load average {load_start[0]:.1f} at start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
