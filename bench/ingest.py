"""Ingestor throughput from Kafka into PostgreSQL, next to a plain COPY of the same rows.

    make bench            # or: .venv/bin/python bench/ingest.py [--bars 1000000]

1. starts Kafka and PostgreSQL with deploy/local/infra.sh (state in .local/bench);
2. publishes N synthetic bars (500 symbols) to ``raw`` with the real producer;
3. starts the real ingestor and samples its committed offsets over time (an offset is
   committed once its row is durable in PostgreSQL): the sustained rate is measured from 5 %
   to 100 % of the rows (start-up and group join excluded). Not pg_stat's n_tup_ins: a busy
   backend reports it every second and an idle one only after 10 s, which understated
   short runs by seconds;
4. replay: a second ingestor in a new consumer group reads the whole topic again, so every
   row is already stored (the conflict path: COPY into a staging table, then
   ``INSERT ... ON CONFLICT DO NOTHING``); its rate is that of its committed offsets, from
   5 % to 100 % of the messages;
5. the references, in the same run and database: the same rows as one prebuilt COPY text
   buffer (the issue's target is a ratio to this) and as one prebuilt binary COPY buffer
   (what the ingestor sends, and about a third faster for the server: the strongest
   reference) into an empty table of the same definition (primary key included), committed
   with fsync on: the physical ceilings of getting these rows into PostgreSQL.

The machine's load average is recorded before and after each phase.

Writes bench/results/ingest.json and bench/results/ingest.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from msgspec.structs import astuple  # noqa: E402

from stockpipe.common.messages import Bar, Codec  # noqa: E402
from stockpipe.ingestor.sinks import SINKS  # noqa: E402

from harness import Stack, bench_stack, wait_for  # noqa: E402

RESULTS = REPO / "bench" / "results"


def cpu_seconds(match: str) -> float:
    """user+system CPU seconds of every process whose command line contains ``match``."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if match not in cmd:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Committed:
    """Messages of ``raw`` whose offsets a group has committed (its output is durable).

    One consumer for all samples: a new one per sample took ~0.1 s to connect, which blurred
    the end of a run of a few seconds."""

    def __init__(self, stack: Stack, group: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        topic = stack.topic("raw")
        self.consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in parts]

    def __call__(self) -> int:
        return sum(max(0, tp.offset) for tp in self.consumer.committed(self.partitions, timeout=10))

    def close(self) -> None:
        self.consumer.close()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def copy_reference(stack: Stack, lines: bytes, repeats: int, copy: str = "COPY {table} FROM STDIN") -> list[float]:
    """Seconds for COPY of the prebuilt buffer into a fresh keyed table, committed."""
    times = []
    for i in range(repeats):
        conn = psycopg2.connect(stack.dsn)
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE copy_ref_{i} (LIKE price_bars INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert(copy.format(table=f"copy_ref_{i}"), io.BytesIO(lines), size=1 << 20)
        conn.commit()
        times.append(time.perf_counter() - start)
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE copy_ref_{i}")
        conn.commit()
        conn.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=20_000)
    args = parser.parse_args()
    n = args.bars

    stack = bench_stack()
    try:
        t0 = time.perf_counter()
        stack.run_module("stockpipe.producer", timeout=900, PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                         SYNTHETIC_START="2000-01-03T00:00:00Z", SYNTHETIC_SYMBOLS=str(args.symbols),
                         MAX_MESSAGES=str(n), COMPANIES="false", RESUME_SCAN="0")
        produce_s = time.perf_counter() - t0
        print(f"published {n} bars in {produce_s:.1f}s ({n / produce_s:,.0f}/s, producer process incl. start-up)")

        loads = {"ingest": [load()]}
        parties = {"ingestor": "stockpipe.ingestor", "kafka": "kafka.Kafka"}
        cpu_before = {k: cpu_seconds(m) for k, m in parties.items()}
        machine_before = machine_cpu_seconds()
        ingestor = stack.start("ingestor", INGESTOR_BATCH_SIZE=str(args.batch_size))
        samples: list[tuple[float, int]] = []
        committed = Committed(stack, "stockpipe-ingestor")

        def done() -> bool:
            samples.append((time.perf_counter(), committed()))
            return samples[-1][1] >= n

        wait_for(done, 900, interval=0.02, what=f"{n} rows")
        committed.close()
        cpu_us_per_row = {k: round((cpu_seconds(m) - cpu_before[k]) / n * 1e6, 2) for k, m in parties.items()}
        cpu_us_per_row["machine"] = round((machine_cpu_seconds() - machine_before) / n * 1e6, 2)
        # What is neither the ingestor nor Kafka: PostgreSQL, mostly (and this script's polling).
        cpu_us_per_row["rest"] = round(cpu_us_per_row["machine"] - cpu_us_per_row["ingestor"] - cpu_us_per_row["kafka"], 2)
        print("CPU per row (µs):", cpu_us_per_row)
        assert ingestor.terminate() == 0
        assert stack.scalar("SELECT count(*) FROM price_bars") == n
        lo = next(s for s in samples if s[1] >= 0.05 * n)
        hi = next(s for s in samples if s[1] >= n)
        ingest_rate = (hi[1] - lo[1]) / (hi[0] - lo[0])
        loads["ingest"].append(load())
        print(f"ingestor: {ingest_rate:,.0f} rows/s sustained")

        # Replay: every row is already stored.
        loads["replay"] = [load()]
        group = "bench-replay"
        replayer = stack.start("ingestor", INGESTOR_BATCH_SIZE=str(args.batch_size), INGESTOR_GROUP_ID=group)
        replayed: list[tuple[float, int]] = []
        committed = Committed(stack, group)

        def replay_done() -> bool:
            replayed.append((time.perf_counter(), committed()))
            return replayed[-1][1] >= n

        wait_for(replay_done, 900, interval=0.02, what=f"{n} messages replayed")
        committed.close()
        assert replayer.terminate() == 0
        assert stack.scalar("SELECT count(*) FROM price_bars") == n
        lo = next(s for s in replayed if s[1] >= 0.05 * n)
        hi = next(s for s in replayed if s[1] >= n)
        replay_rate = (hi[1] - lo[1]) / (hi[0] - lo[0])
        loads["replay"].append(load())
        print(f"replay of stored rows: {replay_rate:,.0f} rows/s sustained")

        # The same rows, formatted exactly as they are stored, outside the timed part.
        codec = Codec(Bar)
        buf = io.StringIO()
        rows = []
        for msg in stack.consume_all("raw", timeout=120):
            b = codec.decode(msg.value())
            buf.write(f"{b.symbol}\t{b.interval}\t{b.ts.isoformat()}\t{b.open!r}\t{b.high!r}\t{b.low!r}"
                      f"\t{b.close!r}\t{b.volume}\t{b.source}\n")
            rows.append(astuple(b))
        lines = buf.getvalue().encode()
        loads["copy"] = [load()]
        copy_times = copy_reference(stack, lines, repeats=3)
        loads["copy"].append(load())
        copy_rate = n / sorted(copy_times)[1]
        print(f"COPY reference: {copy_rate:,.0f} rows/s (median of 3)")
        # The strongest reference: the same rows in PostgreSQL's binary format (what the
        # ingestor sends), prebuilt as one buffer.
        writer = SINKS["raw"].writer
        binary = writer.binary(rows)
        columns = ", ".join(f'"{c}"' for c in writer.columns)
        binary_times = copy_reference(stack, binary, repeats=3,
                                      copy=f"COPY {{table}} ({columns}) FROM STDIN (FORMAT binary)")
        binary_rate = n / sorted(binary_times)[1]
        print(f"binary COPY reference: {binary_rate:,.0f} rows/s (median of 3)")
    finally:
        stack.destroy()

    ratio = ingest_rate / copy_rate
    replay_ratio = replay_rate / copy_rate
    result = {
        "benchmark": "ingest",
        "command": f"make bench  (.venv/bin/python bench/ingest.py --bars {n} --symbols {args.symbols}"
                   f" --batch-size {args.batch_size})",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "bars": n,
        "symbols": args.symbols,
        "ingestor_rows_per_s": round(ingest_rate),
        "copy_rows_per_s": round(copy_rate),
        "copy_seconds": [round(t, 3) for t in copy_times],
        "binary_copy_rows_per_s": round(binary_rate),
        "binary_copy_seconds": [round(t, 3) for t in binary_times],
        "ratio_to_binary_copy": round(ingest_rate / binary_rate, 3),
        "replay_ratio_to_binary_copy": round(replay_rate / binary_rate, 3),
        "ratio_to_copy": round(ratio, 3),
        "replay_rows_per_s": round(replay_rate),
        "replay_ratio_to_copy": round(replay_ratio, 3),
        "targets": {"new_rows_ratio": 0.85, "replay_ratio": 0.5},
        "load_average_before_after": loads,
        "producer_bars_per_s": round(n / produce_s),
        "ingest_cpu_us_per_row": cpu_us_per_row,
        "ingestor_batch_size": args.batch_size,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "| what | rows/s | vs text COPY | vs binary COPY |\n|---|---:|---:|---:|\n"
        f"| stockpipe ingestor, Kafka `raw` → `price_bars` (sustained) | {ingest_rate:,.0f} | {ratio:.0%}"
        f" | {ingest_rate / binary_rate:.0%} |\n"
        f"| stockpipe ingestor, replay of stored rows (conflict path) | {replay_rate:,.0f} | {replay_ratio:.0%}"
        f" | {replay_rate / binary_rate:.0%} |\n"
        f"| PostgreSQL text `COPY` of the same rows, prebuilt buffer (the target's reference) | {copy_rate:,.0f}"
        f" | 100% | {copy_rate / binary_rate:.0%} |\n"
        f"| PostgreSQL binary `COPY` of the same rows, prebuilt buffer | {binary_rate:,.0f}"
        f" | {binary_rate / copy_rate:.0%} | 100% |\n"
    )
    (RESULTS / "ingest.md").write_text(
        f"Ingest benchmark, {n:,} bars of {args.symbols} symbols, {result['when']}, "
        f"`{result['command']}`\n\n{table}")
    print(table)
    print("targets: new rows >= 85% of COPY:", "met" if ratio >= 0.85 else "NOT met",
          "| replay >= 50% of COPY:", "met" if replay_ratio >= 0.5 else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
