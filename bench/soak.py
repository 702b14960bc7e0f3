"""Soak: producer → analytics → ingestor at a steady rate for minutes; memory, lag and latency over time.

    make soak             # or: .venv/bin/python bench/soak.py [--rate 5000 --minutes 10]

Not in CI (it runs for ten minutes). With Kafka and PostgreSQL from deploy/local/infra.sh
(state in .local/bench), the real producer publishes synthetic bars of 500 symbols at
``--rate`` bars/s while the real analytics and ingestor run. Every 5 s it records each
service's resident memory (VmRSS), the consumer lag of analytics (raw) and of the ingestor
(all its topics), and how many bars were published and stored. At the end:

- resident memory of each service after warm-up (``--warmup`` s) and at the end, growth in %
  (goal < 10 %);
- consumer lag over time (goal: bounded, i.e. the last third's maximum no higher than the
  first third's plus one second of input);
- publish → indicator latency per bar from Kafka CreateTimes (p50/p99, and p99 of the
  first and last thirds: a latency that climbs means the rate was not sustained);
- publish → row latency, from the sampled stored-row count: at each sample, the age of the
  N-th published bar when N bars are stored (p50/p99).

Figures go to bench/results/soak.json, with the machine's load average before and after.
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

from harness import ServiceProcess, Stack, bench_stack, metrics_of  # noqa: E402

RESULTS = REPO / "bench" / "results"


def rss_mb(proc: ServiceProcess) -> float:
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lag(port: int) -> float:
    try:
        return sum(v for (name, _), v in metrics_of(port).items() if name == "stockpipe_consumer_lag")
    except OSError:
        return float("nan")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def thirds(values: list[float]) -> tuple[list[float], list[float]]:
    k = max(1, len(values) // 3)
    return values[:k], values[-k:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000, help="offered bars/s")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=60, help="seconds before the first memory figure")
    args = parser.parse_args()
    seconds = args.minutes * 60
    load_before = os.getloadavg()
    stack: Stack = bench_stack()
    samples: list[dict] = []
    try:
        analytics = stack.start("analytics")
        ingestor = stack.start("ingestor")
        analytics.wait_ready()
        ingestor.wait_ready()
        producer = stack.start("producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE=str(args.rate),
                               SYNTHETIC_START="2024-01-02T00:00:00Z", SYNTHETIC_SYMBOLS="500",
                               COMPANIES="false", RESUME_SCAN="0", PROGRESS_INTERVAL="30")
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(5)
            if not all(p.alive() for p in (producer, analytics, ingestor)):
                raise AssertionError("a service exited during the soak")
            samples.append({
                "t": round(time.monotonic() - t0, 1),
                "wall_ms": time.time() * 1000,
                "rss_mb": {p.name: round(rss_mb(p), 1) for p in (producer, analytics, ingestor)},
                "lag": {"analytics": lag(analytics.port), "ingestor": lag(ingestor.port)},
                "rows": stack.scalar("SELECT count(*) FROM price_bars"),
            })
            print(f"  {elapsed:5.0f}s rss {samples[-1]['rss_mb']} lag {samples[-1]['lag']} rows {samples[-1]['rows']:,}",
                  flush=True)
        producer.terminate()
        time.sleep(5)
        analytics.terminate()
        ingestor.terminate()

        bars, inds = Codec(Bar), Codec(Indicators)
        sent: dict[tuple, float] = {}
        for m in stack.consume_all("raw", timeout=300):
            b = bars.decode(m.value())
            sent[(b.symbol, b.ts)] = m.timestamp()[1]
        published = sorted(sent.values())
        first = published[0]
        ind_lat: list[tuple[float, float]] = []
        for m in stack.consume_all("indicators", timeout=300):
            i = inds.decode(m.value())
            t = sent[(i.symbol, i.ts)]
            ind_lat.append(((t - first) / 1000, (m.timestamp()[1] - t) / 1000))
        ind_lat.sort()
        row_lat = [(s["t"], (s["wall_ms"] - published[s["rows"] - 1]) / 1000) for s in samples if s["rows"] > 0]
    finally:
        stack.destroy()
    load_after = os.getloadavg()

    warm = next((s for s in samples if s["t"] >= args.warmup), samples[0])
    end = samples[-1]
    memory = {name: {"after_warmup_mb": warm["rss_mb"][name], "end_mb": end["rss_mb"][name],
                     "growth_pct": round(100 * (end["rss_mb"][name] / warm["rss_mb"][name] - 1), 1)}
              for name in end["rss_mb"]}
    lat_values = [v for _, v in ind_lat]
    early, late = thirds(lat_values)
    lag_series = {k: [s["lag"][k] for s in samples] for k in ("analytics", "ingestor")}
    lag_bounded = {k: max(thirds(v)[1]) <= max(thirds(v)[0]) + args.rate for k, v in lag_series.items()}
    result = {
        "benchmark": "soak",
        "command": f"make soak  (.venv/bin/python bench/soak.py --rate {args.rate:g} --minutes {args.minutes:g})",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in load_after]},
        "offered_bars_per_s": args.rate,
        "published_bars": len(published),
        "published_bars_per_s": round(len(published) / ((published[-1] - published[0]) / 1000), 1),
        "memory": memory,
        "memory_goal": "growth < 10% between warm-up and end",
        "consumer_lag": {"samples": lag_series, "bounded": lag_bounded},
        "publish_to_indicator_ms": {"p50": round(pct(lat_values, .5) * 1000, 1),
                                    "p99": round(pct(lat_values, .99) * 1000, 1),
                                    "p99_first_third": round(pct(early, .99) * 1000, 1),
                                    "p99_last_third": round(pct(late, .99) * 1000, 1)},
        "publish_to_row_ms": {"p50": round(pct([v for _, v in row_lat], .5) * 1000, 1),
                              "p99": round(pct([v for _, v in row_lat], .99) * 1000, 1),
                              "definition": "at each 5 s sample with N rows stored: now - CreateTime of the "
                                            "N-th published bar"},
        "sustained": pct(late, .99) <= 1.5 * max(pct(early, .99), 0.05),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "consumer_lag"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
