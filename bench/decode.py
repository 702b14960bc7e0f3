"""Benchmark: decoding one message into its validated v1 struct (not a test).

Measures ``Codec.decode`` (and ``Codec.decoder.decode``, the ingestor's path) per message for
a bar (the same ts repeated, as a live feed's symbols share each minute; and a new ts per
message, as one symbol's replay), an indicator message, an alert and a 100-point forecast.
Timed in process CPU time (``time.process_time``), medians of interleaved repeats, so that
other processes on a shared machine slow the figures less than wall-clock timing would.

With ``--baseline-rev REV`` the same messages also go through messages.py as of that git
revision, interleaved with the current one in the same process: a before/after under the
same load. Writes bench/results/decode.json and prints a markdown table.

    .venv/bin/python bench/decode.py --baseline-rev 968a546
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stockpipe.common import messages as current

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "decode.json"
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def load_revision(rev: str):
    """messages.py as of ``rev``, imported as its own module."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:libs/common/src/stockpipe/common/messages.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"messages_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"messages_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the annotations through it
    spec.loader.exec_module(module)
    return module


def payloads(n: int) -> dict[str, list[bytes]]:
    """Messages encoded once with the current code (the wire format did not change)."""
    m = current
    bar = dict(symbol="AAPL", interval="1m", open=10.0, high=12.0, low=9.5, close=11.0, volume=1200,
               source="synthetic")
    enc = m.Codec(m.Bar).encode
    points = [m.ForecastPoint(ts=T0 + timedelta(minutes=i + 1), yhat=11.0 + i / 100, lo=10.0, hi=12.0)
              for i in range(100)]
    return {
        "bar, same ts": [enc(m.Bar(ts=T0, **bar))] * n,
        "bar, new ts each": [enc(m.Bar(ts=T0 + timedelta(minutes=i), **bar)) for i in range(n)],
        "indicators": [m.Codec(m.Indicators).encode(m.Indicators(
            symbol="AAPL", interval="1m", ts=T0, close=11.0, rsi=55.1, sma_short=10.9, sma_long=10.8,
            ema_short=10.95, ema_long=10.85, bb_upper=11.5, bb_middle=10.9, bb_lower=10.3, macd=0.1,
            macd_signal=0.08, macd_hist=0.02, volatility=0.004))] * n,
        "alert": [m.Codec(m.Alert).encode(m.Alert(
            id=m.alert_id("AAPL", "1m", T0, "rsi_overbought"), symbol="AAPL", interval="1m", ts=T0,
            rule="rsi_overbought", value=71.5, threshold=70.0, message="AAPL RSI 71.5 crossed above 70"))] * n,
        "forecast, 100 points": [m.Codec(m.Forecast).encode(m.Forecast(
            symbol="AAPL", interval="1m", made_at=T0 + timedelta(seconds=10), model="naive", points=points))]
        * max(1, n // 50),
    }


TYPES = {"bar, same ts": "Bar", "bar, new ts each": "Bar", "indicators": "Indicators", "alert": "Alert",
         "forecast, 100 points": "Forecast"}


def per_message(fn, data: list[bytes]) -> float:
    start = time.process_time()
    for d in data:
        fn(d)
    return (time.process_time() - start) / len(data) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per timed run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline-rev", help="git revision whose messages.py to measure alongside")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    modules = {"current": current}
    if args.baseline_rev:
        modules[args.baseline_rev] = load_revision(args.baseline_rev)
    data = payloads(args.messages)
    runs: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.repeats):  # interleaved: each repeat times every variant once
        for label, module in modules.items():
            for case, messages in data.items():
                codec = module.Codec(getattr(module, TYPES[case]))
                for path, fn in (("Codec.decode", codec.decode), ("decoder.decode", codec.decoder.decode)):
                    runs.setdefault((label, case, path), []).append(per_message(fn, messages))

    results: dict = {}
    for (label, case, path), times in runs.items():
        results.setdefault(label, {}).setdefault(case, {})[path] = {
            "us_per_message_median": round(statistics.median(times), 3), "us_per_message_min": round(min(times), 3)}
    report = {
        "benchmark": "decode one message into its validated struct (process CPU time)",
        "command": " ".join([".venv/bin/python", "bench/decode.py", *(argv if argv is not None else sys.argv[1:])]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()[0]},
        "params": {"messages": args.messages, "repeats": args.repeats, "baseline_rev": args.baseline_rev},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    labels = list(modules)
    print("| message | path | " + " | ".join(f"{lb}: us" for lb in labels) + " |")
    print("|---|---|" + "---:|" * len(labels))
    for case in data:
        for path in ("Codec.decode", "decoder.decode"):
            cells = [f"{results[lb][case][path]['us_per_message_median']:.3f}" for lb in labels]
            print(f"| {case} | {path} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
