"""Ingestor memory on a backlog: resident memory while it drains N bars, sampled every second.

    .venv/bin/python bench/ingest_memory.py [--bars 1000000]

With Kafka and PostgreSQL from deploy/local/infra.sh (state in .local/bench): the real
producer puts ``--bars`` synthetic bars of 500 symbols on ``raw``, then the real ingestor
starts on that backlog; its VmRSS and the stored row count are sampled every second until
every bar is stored, then for 5 s idle. A consumer that is behind holds librdkafka's
prefetch and full batches, so this is the ceiling the ingestor's memory reaches under the
default settings, whatever the length of a run (the soak's memory growth follows the lag).
Figures go to bench/results/ingest_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from soak import rss_mb  # noqa: E402

from harness import bench_stack  # noqa: E402

RESULTS = REPO / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    stack = bench_stack()
    samples: list[dict] = []
    try:
        stack.run_module("stockpipe.producer", timeout=900, PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                         SYNTHETIC_START="2000-01-03T00:00:00Z", SYNTHETIC_SYMBOLS="500",
                         MAX_MESSAGES=str(args.bars), COMPANIES="false", RESUME_SCAN="0")
        ingestor = stack.start("ingestor")
        ingestor.wait_ready()
        t0 = time.monotonic()
        deadline = t0 + 600
        while time.monotonic() < deadline:
            rows = stack.scalar("SELECT count(*) FROM price_bars")
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(ingestor), 1), "rows": rows})
            print(f"  {samples[-1]['t']:6.1f}s rss {samples[-1]['rss_mb']:6.1f} MB rows {rows:,}", flush=True)
            if rows >= args.bars:
                break
            time.sleep(1)
        drained = samples[-1]["t"]
        for _ in range(5):
            time.sleep(1)
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(ingestor), 1),
                            "rows": args.bars})
        ingestor.terminate()
    finally:
        stack.destroy()
    peak = max(s["rss_mb"] for s in samples)
    result = {
        "benchmark": "ingestor resident memory draining a backlog",
        "command": f".venv/bin/python bench/ingest_memory.py --bars {args.bars}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before,
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "bars": args.bars,
        "drained_seconds": drained,
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_peak": peak,
        "rss_mb_end_idle": samples[-1]["rss_mb"],
        "first_within_5pct_of_peak_s": next(s["t"] for s in samples if s["rss_mb"] >= 0.95 * peak),
        "samples": samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
