"""Benchmark: the forecaster's auto-ARIMA against its peers on the same series (not a test).

Series (500 points each, seeded): random-walk-like prices (geometric Brownian motion, 1 %
per bar) and prices whose log follows a stationary ARMA process (mixed AR/MA orders).
Methods: this forecaster (what the service runs: :func:`stockpipe.forecaster.pool.arima_task`,
statsforecast's stepwise auto-ARIMA on log prices, forecast from its stored params),
statsforecast's ``AutoARIMA`` model on prices, ``pmdarima.auto_arima`` (stepwise) on prices,
and the naive last value. Same search bounds for all (p, q <= 5, d <= 2, p + q <= 5, AICc).

1. **Fit time**: one fit + forecast on all 500 points per series and method, in one process.
   The methods take turns series by series (the order rotates), so a change in the machine's
   load falls on all of them alike; reported per kind as median and mean over the series,
   and as the median over series of the paired ratio ours / statsforecast.
2. **Accuracy**: rolling-origin evaluation: at each origin (400, 420, ..., 480) every method is
   refitted on the points up to it and forecasts 1..5 bars; the points are scored against
   the bars that follow (the forecaster's own :func:`~stockpipe.forecaster.evaluation.backtest`:
   MASE = MAE / MAE of the naive last value on the same targets, per series). Reported: the
   mean over series, and the paired comparison with the better peer (the one of
   statsforecast and pmdarima with the lower mean MASE at that step): the ratio of means
   with a 95 % bootstrap interval over series (the series are resampled, each keeping all
   its methods' errors: a paired comparison). These refits run in 2 worker processes; they
   are not timed.
3. **Refit of 100 series** through the service's own path: an :class:`Engine` fed 500 bars
   of each series makes one ARIMA job per series; the :class:`Dispatcher` runs them on the
   service's :class:`FitPool` (one worker per CPU this process may use) and publishes the
   forecasts (to a list: no Kafka here; an in-memory model registry: no PostgreSQL). Timed
   from the hand-over of the jobs to the completed receipt, with warm workers (the service
   starts its pool once), and separately the pool's cold start.

BLAS/OpenMP pinned to one thread in every process (set before numpy loads; checked with
threadpoolctl and recorded). The machine is shared: the load average before and after each
phase is recorded next to the figures; compare methods only within one run.

    .venv/bin/python bench/forecast.py [--series 20] [--quick] [--ablation] [--profile] [--refit-only]

``--ablation`` adds two variants of this forecaster (fit on prices; the search without the
CSS approximation) to the accuracy and timing tables. ``--profile`` prints a cProfile of
this forecaster's fit path on 10 series and exits. ``--refit-only`` measures phase 3 again
and replaces only its entry in the results (say, when other work loaded the machine then).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads, here and in every worker (DESIGN.md facts)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from stockpipe.forecaster.evaluation import backtest  # noqa: E402
from stockpipe.forecaster.models import naive_forecast, naive_params  # noqa: E402
from stockpipe.forecaster.pool import arima_task, cpu_budget  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "forecast.json"
N = 500
STEPS = 5
LEVEL = 0.95
MAX_P = MAX_Q = 5
MAX_D = 2
OURS = "stockpipe forecaster (statsforecast stepwise auto-ARIMA on log prices)"
SF = "statsforecast AutoARIMA (prices)"
PM = "pmdarima auto_arima, stepwise (prices)"
NAIVE = "naive last value"
BOOTSTRAP = 2000  # resamples of the series for the interval of a ratio of mean MASEs


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
    """What the service runs for one series: fit + forecast of log prices in a worker."""
    logs = np.log(history)
    r = arima_task(logs, MAX_P, MAX_D, MAX_Q, STEPS, LEVEL, None, None)
    return np.exp(r["mean"]), np.exp(r["lo"]), np.exp(r["hi"])


def _statsforecast_search(y: np.ndarray, approximation: bool | None):
    from statsforecast.arima import auto_arima_f, forecast_arima

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = auto_arima_f(y, max_p=MAX_P, max_d=MAX_D, max_q=MAX_Q, seasonal=False, period=1,
                           approximation=approximation)
        out = forecast_arima(fit, h=STEPS, level=[LEVEL * 100])
    return (np.asarray(out["mean"]), np.asarray(out["lower"].iloc[:, 0]), np.asarray(out["upper"].iloc[:, 0]))


def ours_on_prices(history: np.ndarray):
    """Ablation: the same search (CSS approximation) on prices instead of log prices."""
    return _statsforecast_search(np.asarray(history, dtype=np.float64), None)


def ours_without_approximation(history: np.ndarray):
    """Ablation: log prices, every candidate of the search fitted by exact likelihood."""
    mean, lo, hi = _statsforecast_search(np.log(history), False)
    return np.exp(mean), np.exp(lo), np.exp(hi)


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
        model = pmdarima.auto_arima(history, max_p=MAX_P, max_q=MAX_Q, max_d=MAX_D, max_order=5, seasonal=False,
                                    information_criterion="aicc", stepwise=True, suppress_warnings=True,
                                    error_action="ignore")
        mean, conf = model.predict(n_periods=STEPS, return_conf_int=True, alpha=1 - LEVEL)
    return np.asarray(mean), conf[:, 0], conf[:, 1]


def naive(history: np.ndarray):
    logs = np.log(history)
    mean, lo, hi = naive_forecast(naive_params(logs), logs, STEPS, LEVEL)
    return np.exp(mean), np.exp(lo), np.exp(hi)


METHODS = {OURS: stockpipe_forecaster, SF: statsforecast_autoarima, PM: pmdarima_auto_arima, NAIVE: naive}
ABLATION = {"ablation: this forecaster's search on prices": ours_on_prices,
            "ablation: this forecaster without the CSS approximation": ours_without_approximation}
ALL_METHODS = {**METHODS, **ABLATION}


# --- helpers -----------------------------------------------------------------------------------------

def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _blas_threads() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{"api": i["internal_api"], "num_threads": i["num_threads"]} for i in threadpool_info()]


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    warnings.simplefilter("ignore")


def _origin_task(task: tuple) -> tuple:
    method, kind, i, origin, history = task
    yhat, lo, hi = ALL_METHODS[method](history)
    return method, kind, i, origin, (np.asarray(yhat, float), np.asarray(lo, float), np.asarray(hi, float))


def _ratio_interval(ours: list[float], peer: list[float], seed: int) -> tuple[float, float, float]:
    """Ratio of mean MASEs (ours / peer) and its 95 % bootstrap interval over series (paired)."""
    a, b = np.asarray(ours), np.asarray(peer)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))
    ratios = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    return float(a.mean() / b.mean()), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


# --- phases ------------------------------------------------------------------------------------------

def fit_times(kinds: dict[str, list[np.ndarray]], methods: dict) -> dict:
    """One fit + forecast per series and method, taking turns (rotating order)."""
    names = list(methods)
    for fn in methods.values():  # imports and first-call costs are not a fit's
        fn(kinds["random walk"][0][:200])
    out: dict = {}
    for kind, series in kinds.items():
        times: dict[str, list[float]] = {m: [] for m in names}
        for i, y in enumerate(series):
            for m in names[i % len(names):] + names[: i % len(names)]:
                start = time.perf_counter()
                methods[m](y)
                times[m].append(time.perf_counter() - start)
        out[kind] = {m: {"median": statistics.median(t), "mean": statistics.fmean(t), "seconds": t}
                     for m, t in times.items()}
        ours, sf = np.asarray(times[OURS]), np.asarray(times[SF])
        out[kind]["paired_ratio_ours_to_statsforecast"] = {"median": float(np.median(ours / sf)),
                                                           "min": float(np.min(ours / sf)),
                                                           "max": float(np.max(ours / sf))}
    return out


def accuracy(kinds: dict[str, list[np.ndarray]], methods: dict, origins: range, workers: int) -> dict:
    tasks = [(m, kind, i, o, y[: o + 1]) for m in methods for kind, series in kinds.items()
             for i, y in enumerate(series) for o in origins]
    ctx = multiprocessing.get_context("forkserver")
    got: dict = {}
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for method, kind, i, origin, fc in pool.imap_unordered(_origin_task, tasks, chunksize=4):
            got[(method, kind, i, origin)] = fc
    out: dict = {}
    for kind, series in kinds.items():
        per_series: dict[str, dict[int, list]] = {m: {1: [], STEPS: []} for m in methods}
        coverage: dict[str, dict[int, list]] = {m: {1: [], STEPS: []} for m in methods}
        for m in methods:
            for i, y in enumerate(series):
                res = backtest(y[: origins[-1] + STEPS + 1], lambda h, m=m, i=i, kind=kind: got[(m, kind, i, len(h) - 1)],
                               start=origins.start, every=origins.step, steps=STEPS, level=LEVEL)
                for h in (1, STEPS):
                    per_series[m][h].append(res["steps"][str(h)]["mase"])
                    coverage[m][h].append(res["steps"][str(h)]["coverage"])
        k = out[kind] = {"methods": {}, "paired": {}}
        for m in methods:
            k["methods"][m] = {f"mase_{h}": statistics.fmean(per_series[m][h]) for h in (1, STEPS)}
            k["methods"][m].update({f"mase_{h}_sd_over_series": statistics.stdev(per_series[m][h]) for h in (1, STEPS)})
            k["methods"][m].update({f"coverage_{h}": statistics.fmean(coverage[m][h]) for h in (1, STEPS)})
        for h in (1, STEPS):
            peer = min((SF, PM), key=lambda p: statistics.fmean(per_series[p][h]))
            for m in [OURS, *[a for a in ABLATION if a in methods]]:
                ratio, lo, hi = _ratio_interval(per_series[m][h], per_series[peer][h], seed=h)
                k["paired"].setdefault(m, {})[f"step_{h}"] = {
                    "better_peer": peer, "ratio_of_mean_mase": ratio, "ci95": [lo, hi],
                    "series_where_ours_is_lower": int(sum(a < b for a, b in zip(per_series[m][h],
                                                                               per_series[peer][h]))),
                    "series_tied": int(sum(a == b for a, b in zip(per_series[m][h], per_series[peer][h]))),
                    "within_2_percent": ratio <= 1.02}
        k["scored_points_per_step"] = len(series) * len(origins)
    return out


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes so far (Linux /proc), in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


class _NoRegistry:
    """The model registry's interface, in memory (the benchmark has no PostgreSQL)."""

    def find(self, *args):
        return None

    def save(self, rec) -> bool:
        return True

    def latest(self, until, kind):
        return {}


def refit_many(series: list[np.ndarray]) -> dict:
    """The service's path: Engine -> Dispatcher -> FitPool, one ARIMA job per series."""
    from stockpipe.common.messages import Indicators
    from stockpipe.forecaster.dispatch import Dispatcher
    from stockpipe.forecaster.engine import Engine
    from stockpipe.forecaster.pool import FitPool
    from stockpipe.forecaster.settings import ForecasterSettings

    s = ForecasterSettings(arima_min_observations=N, arima_window=N, forecast_history=N, forecast_every_bars=N,
                           min_training_samples=N - 20).check()  # ARIMA only: no indicators, no regression
    load_start = _load()
    start = time.perf_counter()
    pool = FitPool(cpu_budget())
    done = []
    for _ in range(pool.workers):  # the forkserver and each worker up, imports done
        pool.submit(arima_task, (np.log(series[0][:50]), 1, 1, 1, 1, LEVEL, None, None), done.append, done.append)
    deadline = time.monotonic() + 600
    while len(done) < pool.workers and time.monotonic() < deadline:
        time.sleep(0.01)
    cold = time.perf_counter() - start
    published: list = []
    dispatcher = Dispatcher(s, pool, _NoRegistry(), lambda topic, value, key: published.append(value),
                            threading.Event())
    try:
        engine = Engine(s)
        t0 = datetime(2024, 1, 2, tzinfo=UTC)
        jobs = []
        for k, y in enumerate(series):
            for j, c in enumerate(y):
                jobs += engine.add(Indicators(symbol=f"B{k:03d}", interval="1m", ts=t0 + timedelta(minutes=j),
                                              close=float(c)), 0)
        pids = [p.pid for p in pool._pool._pool]  # noqa: SLF001 - the worker processes, for their CPU time
        cpu = _cpu_seconds(pids)
        start = time.perf_counter()
        dispatcher.submit(jobs).result(timeout=3600)
        wall = time.perf_counter() - start
        cpu = _cpu_seconds(pids) - cpu
    finally:
        dispatcher.close()
    return {"series": len(series), "jobs": len(jobs), "forecasts_published": len(published),
            "workers": pool.workers, "wall_seconds": wall, "pool_cold_start_seconds": cold,
            "worker_cpu_seconds": cpu,
            "wall_seconds_if_the_workers_had_their_cpus": cpu / pool.workers,
            "load_average_start": load_start, "load_average_end": _load(),
            "path": "Engine.add -> Dispatcher.submit -> FitPool(arima_task) -> forecast encoded; "
                    "registry in memory, publish to a list"}


def profile(kinds: dict[str, list[np.ndarray]]) -> None:
    import cProfile
    import pstats

    series = kinds["random walk"][:5] + kinds["ARMA"][:5]
    stockpipe_forecaster(series[0])
    prof = cProfile.Profile()
    prof.enable()
    for y in series:
        stockpipe_forecaster(y)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=20, help="series of each kind (default 20)")
    ap.add_argument("--quick", action="store_true", help="4 series of each kind, 2 origins, 20 refits")
    ap.add_argument("--ablation", action="store_true", help="add the forecaster on prices and without approximation")
    ap.add_argument("--profile", action="store_true", help="cProfile of the forecaster's fit path, then exit")
    ap.add_argument("--refit-only", action="store_true", help="measure the 100-series refit again, keep the rest")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    k = 4 if args.quick else args.series
    origins = range(440, 481, 40) if args.quick else range(400, 481, 20)
    kinds = {"random walk": random_walks(k, 1), "ARMA": arma_prices(k, 2)}
    if args.profile:
        profile(kinds)
        return 0
    if args.refit_only:
        result = json.loads(RESULTS.read_text())
        result["refit"] = refit_many(random_walks(50, 3) + arma_prices(50, 4))
        result["refit"]["command"] = ".venv/bin/python bench/forecast.py --refit-only"
        result["refit"]["when"] = datetime.now(UTC).isoformat(timespec="seconds")
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        r = result["refit"]
        print(f"refit {r['series']} series: {r['wall_seconds']:.1f} s wall, {r['worker_cpu_seconds']:.1f} CPU s in "
              f"{r['workers']} workers, load {r['load_average_start']} -> {r['load_average_end']}")
        return 0
    methods = ALL_METHODS if args.ablation else METHODS
    began = time.perf_counter()
    load_start = _load()
    print(f"fit times ({k} series per kind), load {load_start} ...", file=sys.stderr, flush=True)
    times = fit_times(kinds, methods)
    load_after_times = _load()
    print(f"accuracy ({len(origins)} origins), load {load_after_times} ...", file=sys.stderr, flush=True)
    acc = accuracy(kinds, methods, origins, cpu_budget())
    load_after_accuracy = _load()
    many = random_walks(20, 3) if args.quick else random_walks(50, 3) + arma_prices(50, 4)
    print(f"refit {len(many)} series, load {load_after_accuracy} ...", file=sys.stderr, flush=True)
    refit = refit_many(many)
    result = {
        "benchmark": "forecast",
        "command": ".venv/bin/python bench/forecast.py" + (" --quick" if args.quick else f" --series {k}")
                   + (" --ablation" if args.ablation else ""),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_seconds": round(time.perf_counter() - began, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu_budget": cpu_budget(),
                    "load_average_start": load_start, "load_average_after_fit_times": load_after_times,
                    "load_average_after_accuracy": load_after_accuracy, "load_average_end": _load(),
                    "blas_threads": _blas_threads(),
                    "note": "shared 2-core machine: compare methods within this run only"},
        "versions": {p: metadata.version(p) for p in ("statsforecast", "pmdarima", "numpy", "scipy", "pandas")},
        "points_per_series": N, "series_per_kind": k, "steps": STEPS, "level": LEVEL,
        "origins": list(origins), "max_p_d_q": [MAX_P, MAX_D, MAX_Q], "max_order": 5, "ic": "aicc",
        "fit_seconds": times,
        "accuracy": acc,
        "refit": refit,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| method | kind | fit s median | fit s mean | MASE 1 | MASE {STEPS} | coverage 1 / {STEPS} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for m in methods:
        for kind in kinds:
            t, a = times[kind][m], acc[kind]["methods"][m]
            print(f"| {m} | {kind} | {t['median']:.3f} | {t['mean']:.3f} | {a['mase_1']:.3f} | {a[f'mase_{STEPS}']:.3f} "
                  f"| {a['coverage_1']:.2f} / {a[f'coverage_{STEPS}']:.2f} |")
    for kind in kinds:
        r = times[kind]["paired_ratio_ours_to_statsforecast"]["median"]
        print(f"{kind}: fit time ours / statsforecast, median of paired ratios {r:.2f}")
        for m, steps in acc[kind]["paired"].items():
            for h, p in steps.items():
                print(f"{kind} {h}: {m[:40]} / {p['better_peer'][:24]} MASE ratio {p['ratio_of_mean_mase']:.4f} "
                      f"(95 % CI {p['ci95'][0]:.4f}-{p['ci95'][1]:.4f}; lower on {p['series_where_ours_is_lower']}"
                      f" of {k} series, tied on {p['series_tied']})")
    print(f"refit {refit['series']} series through Engine/Dispatcher/FitPool with {refit['workers']} workers: "
          f"{refit['wall_seconds']:.1f} s wall (cold pool start {refit['pool_cold_start_seconds']:.1f} s); "
          f"load average {load_start} at start, {result['machine']['load_average_end']} at end; "
          f"run {result['run_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
