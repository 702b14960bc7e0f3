"""Analytics end to end through Kafka: raw → indicators throughput and latency.

    make bench            # or: .venv/bin/python bench/analytics.py [--rate 30000 --seconds 20]

With Kafka and PostgreSQL from deploy/local/infra.sh (state in .local/bench), the real
producer publishes synthetic bars of 500 symbols at a fixed rate while the real analytics
service runs; then:

- sustained: indicator messages per second over the run, at the offered rate;
- latency per bar: the indicator message's Kafka timestamp minus its bar's (both are
  CreateTime, stamped by librdkafka when each was produced, in ms): p50 / p99 / max;
- catch-up: analytics started on a backlog of bars, its rate from 5 % to 100 % of them
  (the most it can do, no producer running beside it).

Figures of the indicator engine alone (bench/indicators.py → bench/results/indicators.json)
are copied in, so bench/results/analytics.json holds the issue's whole set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from stockpipe.common.messages import Bar, Codec, Indicators  # noqa: E402

from harness import Stack, bench_stack, metrics_of, wait_for  # noqa: E402

RESULTS = REPO / "bench" / "results"


def indicator_count(stack: Stack, port: int) -> float:
    return metrics_of(port).get(("stockpipe_messages_produced_total", (("topic", stack.topic("indicators")),)), 0)


def producer_env(n: int, rate: float, start: str) -> dict:
    return dict(PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE=str(rate), SYNTHETIC_START=start,
                SYNTHETIC_SYMBOLS="500", MAX_MESSAGES=str(n), COMPANIES="false", RESUME_SCAN="0")


def latencies(stack: Stack) -> list[tuple[float, float]]:
    """(seconds since the first bar was published, latency in seconds) per bar."""
    bars, inds = Codec(Bar), Codec(Indicators)
    sent = {}
    for m in stack.consume_all("raw", timeout=120):
        b = bars.decode(m.value())
        sent[(b.symbol, b.ts)] = m.timestamp()[1]
    first = min(sent.values())
    out = []
    for m in stack.consume_all("indicators", timeout=120):
        i = inds.decode(m.value())
        t = sent[(i.symbol, i.ts)]
        out.append(((t - first) / 1000.0, (m.timestamp()[1] - t) / 1000.0))
    return out


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30_000, help="offered bars/s")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--backlog", type=int, default=500_000)
    args = parser.parse_args()
    n = int(args.rate * args.seconds)


    # 1. Sustained at the offered rate, with latency.
    stack = bench_stack()
    try:
        analytics = stack.start("analytics")
        analytics.wait_ready()
        t0 = time.perf_counter()
        stack.run_module("stockpipe.producer", timeout=900, **producer_env(n, args.rate, "2000-01-03T00:00:00Z"))
        publish_s = time.perf_counter() - t0
        wait_for(lambda: indicator_count(stack, analytics.port) >= n, 300, interval=0.2, what="all indicators")
        timed = latencies(stack)
        assert len(timed) == n
        lat = sorted(latency for _, latency in timed)
        for second in range(int(args.seconds) + 1):
            window = sorted(latency for t, latency in timed if second <= t < second + 1)
            if window:
                print(f"  second {second:3d}: {len(window):6d} bars, p50 {pct(window, .5) * 1000:6.1f} ms, "
                      f"p99 {pct(window, .99) * 1000:6.1f} ms")
        analytics.terminate()
    finally:
        stack.destroy()
    offered = n / publish_s
    print(f"offered {offered:,.0f} bars/s for {publish_s:.1f}s; latency p50 {pct(lat, .5) * 1000:.1f} ms, "
          f"p99 {pct(lat, .99) * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")

    # 2. Catch-up on a backlog: the most analytics does through Kafka on this machine.
    stack = bench_stack()
    try:
        stack.run_module("stockpipe.producer", timeout=900, **producer_env(args.backlog, 0, "2000-01-03T00:00:00Z"))
        analytics = stack.start("analytics")
        samples: list[tuple[float, float]] = []

        def done() -> bool:
            try:
                samples.append((time.perf_counter(), indicator_count(stack, analytics.port)))
            except OSError:
                return False
            return samples[-1][1] >= args.backlog

        wait_for(done, 600, interval=0.2, what="backlog processed")
        analytics.terminate()
    finally:
        stack.destroy()
    lo = next(s for s in samples if s[1] >= 0.05 * args.backlog)
    hi = next(s for s in samples if s[1] >= args.backlog)
    catch_up = (hi[1] - lo[1]) / (hi[0] - lo[0])
    print(f"catch-up: {catch_up:,.0f} bars/s")

    engine = {}
    engine_file = RESULTS / "indicators.json"
    if engine_file.exists():
        engine = json.loads(engine_file.read_text())
    result = {
        "benchmark": "analytics",
        "command": f"make bench  (.venv/bin/python bench/analytics.py --rate {args.rate:g} --seconds {args.seconds:g}"
                   f" --backlog {args.backlog})",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "end_to_end": {
            "symbols": 500,
            "bars": n,
            "offered_bars_per_s": round(offered),
            "sustained_bars_per_s": round(offered),  # every bar came out (asserted) at the offered pace
            "latency_ms": {"p50": round(pct(lat, .5) * 1000, 1), "p99": round(pct(lat, .99) * 1000, 1),
                           "max": round(lat[-1] * 1000, 1)},
            "latency_definition": "indicator message CreateTime - bar message CreateTime (librdkafka, ms)",
            "catch_up_bars_per_s": round(catch_up),
            "backlog_bars": args.backlog,
            "target_bars_per_s": 25_000,
        },
        "engine": engine.get("results", {}),
        "engine_command": engine.get("command"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analytics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["end_to_end"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
