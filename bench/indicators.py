"""Benchmark: per-bar cost of the whole indicator set (not a test).

The set: RSI(14), SMA(20), SMA(50), EMA(12), EMA(26), Bollinger(20, 2), MACD(12, 26, 9) and
volatility (std dev of 20 log returns), for every bar, measured on the same seeded bars with:

- stockpipe: ``IndicatorState.update`` (pure Python, one symbol's state per object: the
  reference, and what a series runs while it warms up);
- stockpipe kernel, per bar: ``IndicatorColumns.step``, one bar of one series per call through
  the C kernel (the per-bar path);
- talipp: its equivalent indicators, each ``add``-ed every bar (StdDev fed log returns);
- TA-Lib recompute: the batch functions over the last 200 closes on every bar, keeping the
  last value (what most streaming projects do);
- TA-Lib stream: TA-Lib 0.8's stateful ``talib.stream`` handles, ``update`` per bar;
- stockpipe numpy: ``IndicatorBatch.update`` over all symbols at once (multi-symbol run only);
- stockpipe columns: what the analytics service runs on a batch: every symbol has a column of
  ``IndicatorColumns`` from its first bar, and one call of the C kernel advances every
  symbol's next bar (multi-symbol run only; warm-up included).

Two runs: one symbol x 200k bars, and 500 symbols x 2000 bars fed bar by bar across
symbols (as a consumer sees them). The slow peers (talipp, TA-Lib recompute) run on a
subset of each (stated in the output) since only their per-bar cost is reported.
Figures are medians of several repeats. Writes bench/results/indicators.json and prints a
markdown table.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=services/analytics/src .venv/bin/python bench/indicators.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (DESIGN.md facts)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

from stockpipe.analytics import indicators as ind

RESULTS = Path(__file__).resolve().parent / "results" / "indicators.json"
WINDOW = 200  # bars kept for the TA-Lib recompute peer
HISTORY = 200  # bars used to open the talib.stream handles


def make_closes(symbols: int, bars: int, seed: int) -> np.ndarray:
    """Geometric random walks, 1-minute-like moves (0.1 % per bar), starts 10..500."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(10.0, 500.0, size=(symbols, 1))
    return start * np.exp(np.cumsum(rng.normal(0.0, 0.001, size=(symbols, bars)), axis=1))


# --- engines: each takes closes[symbols, bars] and returns (seconds, bars timed) -------------------

def run_stockpipe(closes: np.ndarray) -> tuple[float, int]:
    data = closes.T.tolist()  # bar-major: every symbol's bar t, then t+1
    states = [ind.IndicatorState() for _ in range(closes.shape[0])]
    t0 = time.perf_counter()
    if len(states) == 1:
        state = states[0]
        for (x,) in data:
            state.update(x)
    else:
        for row in data:
            for state, x in zip(states, row):
                state.update(x)
    return time.perf_counter() - t0, closes.size


def run_numpy_batch(closes: np.ndarray, exact_log: bool = True) -> tuple[float, int]:
    batch = ind.IndicatorBatch(closes.shape[0], exact_log=exact_log)
    cols = [np.ascontiguousarray(closes[:, t]) for t in range(closes.shape[1])]
    t0 = time.perf_counter()
    for col in cols:
        batch.update(col)
    return time.perf_counter() - t0, closes.size


def run_columns(closes: np.ndarray) -> tuple[float, int]:
    """The service's batched path: every symbol in a column from its first bar (warm-up
    included), each step advancing every symbol's next bar in one call of the C kernel."""
    from stockpipe.analytics.indicators.columns import IndicatorColumns

    n_sym, n_bars = closes.shape
    steps = [np.ascontiguousarray(closes[:, t]) for t in range(n_bars)]
    out = np.empty((n_sym, 12))
    t0 = time.perf_counter()
    columns = IndicatorColumns(capacity=n_sym)
    cols = np.array([columns.new() for _ in range(n_sym)], dtype=np.int64)
    for step in steps:
        columns.update(cols, step, out)
    return time.perf_counter() - t0, closes.size


def run_kernel_step(closes: np.ndarray) -> tuple[float, int]:
    """The per-bar path through the kernel: ``IndicatorColumns.step`` per bar (after warm-up)."""
    from stockpipe.analytics.indicators.columns import IndicatorColumns

    n_sym, n_bars = closes.shape
    warm = ind.IndicatorConfig().warmup_bars
    columns = IndicatorColumns(capacity=n_sym)
    for k in range(n_sym):
        columns.add(ind.IndicatorState.from_history(closes[k, :warm].tolist()))
    data = closes[:, warm:].T.tolist()
    step = columns.step
    t0 = time.perf_counter()
    if n_sym == 1:
        for (x,) in data:
            step(0, x)
    else:
        for row in data:
            for k, x in enumerate(row):
                step(k, x)
    return time.perf_counter() - t0, (n_bars - warm) * n_sym


def run_talipp(closes: np.ndarray) -> tuple[float, int]:
    from talipp.indicators import BB, EMA, MACD, RSI, SMA, StdDev

    data = closes.T.tolist()
    sets = [(RSI(14), SMA(20), SMA(50), EMA(12), EMA(26), BB(20, 2.0), MACD(12, 26, 9), StdDev(20))
            for _ in range(closes.shape[0])]
    prev: list[float | None] = [None] * closes.shape[0]
    log = math.log
    t0 = time.perf_counter()
    for row in data:
        for k, x in enumerate(row):
            rsi, sma_s, sma_l, ema_s, ema_l, bb, macd, vol = sets[k]
            rsi.add(x)
            sma_s.add(x)
            sma_l.add(x)
            ema_s.add(x)
            ema_l.add(x)
            bb.add(x)
            macd.add(x)
            p = prev[k]
            if p is not None:
                vol.add(log(x / p))
            prev[k] = x
    return time.perf_counter() - t0, closes.size


def run_talib_recompute(closes: np.ndarray) -> tuple[float, int]:
    import talib

    n_sym, n_bars = closes.shape
    t0 = time.perf_counter()
    for t in range(WINDOW, n_bars):
        for k in range(n_sym):
            w = closes[k, t - WINDOW + 1:t + 1]  # a view of the last 200 closes
            talib.RSI(w, 14)[-1]
            talib.SMA(w, 20)[-1]
            talib.SMA(w, 50)[-1]
            talib.EMA(w, 12)[-1]
            talib.EMA(w, 26)[-1]
            upper, middle, lower = talib.BBANDS(w, 20, 2.0, 2.0, 0)
            upper[-1], middle[-1], lower[-1]
            m, s, h = talib.MACD(w, 12, 26, 9)
            m[-1], s[-1], h[-1]
            talib.STDDEV(talib.LN(talib.ROCR(w, 1)), 20, 1.0)[-1]
    return time.perf_counter() - t0, (n_bars - WINDOW) * n_sym


def run_talib_stream(closes: np.ndarray) -> tuple[float, int]:
    import talib
    from talib import stream

    n_sym, n_bars = closes.shape
    handles = []
    for k in range(n_sym):
        h = closes[k, :HISTORY]
        r = np.log(h[1:] / h[:-1])
        handles.append((
            stream.RSI(h, timeperiod=14).update, stream.SMA(h, timeperiod=20).update,
            stream.SMA(h, timeperiod=50).update, stream.EMA(h, timeperiod=12).update,
            stream.EMA(h, timeperiod=26).update, stream.BBANDS(h, 20, 2.0, 2.0, 0).update,
            stream.MACD(h, 12, 26, 9).update, stream.STDDEV(r, timeperiod=20, nbdev=1.0).update,
        ))
    data = closes[:, HISTORY:].T.tolist()
    prev = closes[:, HISTORY - 1].tolist()
    log = math.log
    t0 = time.perf_counter()
    for row in data:
        for k, x in enumerate(row):
            rsi, sma_s, sma_l, ema_s, ema_l, bb, macd, vol = handles[k]
            rsi(x)
            sma_s(x)
            sma_l(x)
            ema_s(x)
            ema_l(x)
            bb(x)
            macd(x)
            vol(log(x / prev[k]))
            prev[k] = x
    del talib
    return time.perf_counter() - t0, (n_bars - HISTORY) * n_sym


def has_talib_stream() -> bool:
    try:
        from talib import stream
    except ImportError:
        return False
    return hasattr(stream, "RSI") and hasattr(stream.RSI, "update")


# --- harness ---------------------------------------------------------------------------------------------

def measure(fn, closes: np.ndarray, repeats: int) -> dict:
    per_bar = []
    for _ in range(repeats):
        seconds, bars = fn(closes)
        per_bar.append(seconds / bars * 1e6)
    return {"us_per_bar": statistics.median(per_bar), "repeats_us": per_bar,
            "symbols": closes.shape[0], "bars_per_symbol": closes.shape[1], "bars_timed": bars}


def cross_check(closes: np.ndarray) -> dict:
    """stockpipe vs TA-Lib stream on the last bar of the first symbol (sanity, not the test)."""
    import talib

    c = closes[0]
    ours = ind.IndicatorState.from_history(c[:-1].tolist()).update(float(c[-1]))
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    ref = (talib.RSI(c, 14)[-1], talib.SMA(c, 20)[-1], talib.SMA(c, 50)[-1], talib.EMA(c, 12)[-1],
           talib.EMA(c, 26)[-1], upper[-1], middle[-1], lower[-1], macd[-1], signal[-1], hist[-1],
           talib.STDDEV(talib.LN(talib.ROCR(c, 1)), 20, 1.0)[-1])
    rel = [abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, ref)]
    return {"max_rel_diff_vs_talib_last_bar": max(rel)}


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("TA-Lib", "talipp", "stockpipe-common"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import talib
        versions["ta-lib-c"] = talib.__ta_version__.decode() if hasattr(talib, "__ta_version__") else None
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "loadavg_at_end": list(os.getloadavg()),  # other work on the machine skews figures
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=200_000, help="bars of the single-symbol run")
    ap.add_argument("--symbols", type=int, default=500, help="symbols of the multi-symbol run")
    ap.add_argument("--symbol-bars", type=int, default=2000, help="bars per symbol of the multi-symbol run")
    ap.add_argument("--slow-bars", type=int, default=50_000, help="single-symbol bars for talipp / recompute")
    ap.add_argument("--slow-symbols", type=int, default=50, help="symbols for talipp / recompute (multi run)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slow-repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20240301)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    load_at_start = list(os.getloadavg())
    one = make_closes(1, args.bars, args.seed)
    many = make_closes(args.symbols, args.symbol_bars, args.seed + 1)
    engines = [("stockpipe", run_stockpipe, None), ("stockpipe kernel, per bar (IndicatorColumns.step)", run_kernel_step, None),
               ("talipp", run_talipp, "slow"),
               ("TA-Lib recompute (last 200 bars)", run_talib_recompute, "slow")]
    if has_talib_stream():
        engines.append(("TA-Lib stream handles", run_talib_stream, None))
    numpy_path = hasattr(ind, "IndicatorBatch")

    results: dict = {"single_symbol": {}, "multi_symbol": {}}
    for name, fn, speed in engines:
        slow = speed == "slow"
        data = one[:, :args.slow_bars] if slow else one
        results["single_symbol"][name] = measure(fn, data, args.slow_repeats if slow else args.repeats)
        data = many[:args.slow_symbols] if slow else many
        results["multi_symbol"][name] = measure(fn, data, args.slow_repeats if slow else args.repeats)
        print(f"  {name}: {results['single_symbol'][name]['us_per_bar']:.3f} / "
              f"{results['multi_symbol'][name]['us_per_bar']:.3f} us per bar", file=sys.stderr)
    if numpy_path:
        results["multi_symbol"]["stockpipe numpy, all symbols per call"] = measure(
            run_numpy_batch, many, args.repeats)
        results["multi_symbol"]["stockpipe columns (the service's batched path)"] = measure(
            run_columns, many, args.repeats)
        results["multi_symbol"]["stockpipe numpy, np.log (not bit-identical)"] = measure(
            lambda c: run_numpy_batch(c, exact_log=False), many, args.repeats)

    for run in results.values():
        base = run.get("talipp", {}).get("us_per_bar")
        for figures in run.values():
            figures["speedup_vs_talipp"] = base / figures["us_per_bar"] if base else None

    report = {
        "benchmark": "indicator set per bar: RSI14, SMA20, SMA50, EMA12, EMA26, BB(20,2), MACD(12,26,9), "
                     "volatility (std of 20 log returns)",
        "command": "OPENBLAS_NUM_THREADS=1 PYTHONPATH=services/analytics/src .venv/bin/python "
                   + " ".join(["bench/indicators.py", *(argv if argv is not None else sys.argv[1:])]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_at_start": load_at_start},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "check": cross_check(one[:, :5000]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nIndicator set per bar ({report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"Python {report['machine']['versions']['python']}, medians)\n")
    k = args.symbols
    print(f"| engine | 1 symbol x {args.bars} bars: us/bar | {k} symbols x {args.symbol_bars} bars: "
          f"us/bar | vs talipp (1 / {k}) |")
    print("|---|---:|---:|---:|")
    names = list(results["single_symbol"]) + [n for n in results["multi_symbol"] if n not in results["single_symbol"]]
    for name in names:
        a, b = results["single_symbol"].get(name), results["multi_symbol"].get(name)

        def cell(f):
            return f"{f['us_per_bar']:.3f}" if f else "-"

        def speed(f):
            return f"{f['speedup_vs_talipp']:.1f}x" if f and f["speedup_vs_talipp"] else "-"

        print(f"| {name} | {cell(a)} | {cell(b)} | {speed(a)} / {speed(b)} |")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
