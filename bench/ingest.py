"""Ingestor throughput from Kafka into PostgreSQL, next to a plain COPY of the same rows.

    make bench            # or: .venv/bin/python bench/ingest.py [--bars 1000000]

1. starts Kafka and PostgreSQL with deploy/local/infra.sh (state in .local/bench);
2. publishes N synthetic bars (500 symbols) to ``raw`` with the real producer, and builds the
   same rows as one text COPY buffer and two binary COPY buffers, one in arrival order and one
   grouped by symbol as the ingestor sends each batch (outside every timed part);
3. then, ``--rounds`` times (3), within seconds of each other, because this machine's speed
   drifts by more than the target's margin over minutes (the text COPY moved between 313k
   and 349k rows/s in one day):

   a. the references: each buffer COPYed into an empty table of the same definition (primary
      key included) and committed with fsync on. Text COPY is the issue's reference; binary
      (the ingestor's format, ~25 % faster for the server) a stronger one, and binary with all
      the rows grouped by symbol (the server's index inserts in key order, faster still) the
      strongest;
   b. ``price_bars`` emptied, the real ingestor in a new consumer group drains ``raw``: its
      rate is that of its committed offsets (an offset is committed once its row is durable),
      sampled every 20 ms, from 5 % to 100 % of the rows (start-up and group join excluded).
      Not pg_stat's n_tup_ins: a busy backend reports it every second and an idle one only
      after 10 s, which understated short runs by seconds;
   c. replay: an ingestor in another new group reads the whole topic again, every row already
      stored (the conflict path: COPY into a staging table, then ``INSERT ... ON CONFLICT DO
      NOTHING``), timed the same way.

Each round's ratios are its ingest rates over its own COPY; the verdict is on the median
round, and every round is printed and kept. CPU per row and the load average before and after
are recorded per round, and a CPU probe (bench/analytics.py's: µs to build one Bar, ~0.30 on
this machine's fast phase, ~0.58 on its slow one) before each.

Writes bench/results/ingest.json and bench/results/ingest.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))


from analytics import cpu_probe_us  # noqa: E402

from stockpipe.common.messages import Bar, Codec  # noqa: E402
from stockpipe.ingestor.binary import BinaryRows  # noqa: E402
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


def checkpoint() -> None:
    """A CHECKPOINT before each timed phase: none starts with the dirty pages of the one before.

    As the cluster's superuser through its unix socket (trust; the app role may not checkpoint).
    """
    pg = (REPO / ".local" / "bench" / "postgres").resolve()
    conn = psycopg2.connect(host=str(pg / "run"), port=(pg / "port").read_text().strip(), user="postgres",
                            dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CHECKPOINT")
    finally:
        conn.close()


PARTIES = {"ingestor": "stockpipe.ingestor", "kafka": "kafka.Kafka"}


def timed_drain(stack: Stack, n: int, group: str, batch_size: int) -> tuple[float, dict[str, float]]:
    """Rows per second of an ingestor in consumer group ``group`` over all ``n`` messages of
    ``raw``, and CPU microseconds per row (ingestor, Kafka, the whole machine, the rest).

    Timed by its committed offsets from 5 % to 100 % of the messages (start-up and group
    join excluded); the CPU over the same span."""
    ingestor = stack.start("ingestor", INGESTOR_BATCH_SIZE=str(batch_size), INGESTOR_GROUP_ID=group)
    samples: list[tuple[float, int]] = []
    committed = Committed(stack, group)
    cpu_at: dict[str, float] = {}

    def done() -> bool:
        samples.append((time.perf_counter(), committed()))
        if not cpu_at and samples[-1][1] >= 0.05 * n:
            cpu_at.update({k: cpu_seconds(m) for k, m in PARTIES.items()}, machine=machine_cpu_seconds())
        return samples[-1][1] >= n

    wait_for(done, 900, interval=0.02, what=f"{n} messages committed by {group}")
    cpu = {k: cpu_seconds(m) - cpu_at[k] for k, m in PARTIES.items()}
    cpu["machine"] = machine_cpu_seconds() - cpu_at["machine"]
    committed.close()
    assert ingestor.terminate() == 0
    lo = next(s for s in samples if s[1] >= 0.05 * n)
    hi = next(s for s in samples if s[1] >= n)
    rows = hi[1] - lo[1]
    us = {k: round(v / rows * 1e6, 2) for k, v in cpu.items()}
    # What is neither the ingestor nor Kafka: PostgreSQL, mostly (and this script's polling).
    us["rest"] = round(us["machine"] - us["ingestor"] - us["kafka"], 2)
    return rows / (hi[0] - lo[0]), us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (text COPY, binary COPY, ingest, replay); ratios are per round")
    args = parser.parse_args()
    n = args.bars

    stack = bench_stack()
    rounds = []
    try:
        t0 = time.perf_counter()
        stack.run_module("stockpipe.producer", timeout=900, PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                         SYNTHETIC_START="2000-01-03T00:00:00Z", SYNTHETIC_SYMBOLS=str(args.symbols),
                         MAX_MESSAGES=str(n), COMPANIES="false", RESUME_SCAN="0")
        produce_s = time.perf_counter() - t0
        print(f"published {n} bars in {produce_s:.1f}s ({n / produce_s:,.0f}/s, producer process incl. start-up)")

        # The same rows, formatted exactly as they are stored (text, and binary as the
        # ingestor sends it), outside every timed part.
        codec = Codec(Bar)
        buf = io.StringIO()
        rows = []
        for msg in stack.consume_all("raw", timeout=120):
            b = codec.decode(msg.value())
            buf.write(f"{b.symbol}\t{b.interval}\t{b.ts.isoformat()}\t{b.open!r}\t{b.high!r}\t{b.low!r}"
                      f"\t{b.close!r}\t{b.volume}\t{b.source}\n")
            rows.append(b)
        lines = buf.getvalue().encode()
        writer = SINKS["raw"].writer
        # In arrival order, as a client COPYing the rows as they come would send them (the
        # ingestor groups each batch by symbol, which the server inserts faster).
        binary = BinaryRows(writer.binary.kinds, fields=writer.columns)(rows)
        grouped = writer.binary(rows)  # all the rows at once: one group per symbol
        del rows
        columns = ", ".join(f'"{c}"' for c in writer.columns)
        binary_copy = f"COPY {{table}} ({columns}) FROM STDIN (FORMAT binary)"

        for r in range(args.rounds):
            # Each round's figures are taken within seconds of each other: this machine's
            # speed drifts by more than the target's margin over minutes.
            one: dict = {"load_before": load(), "cpu_probe_us_before": cpu_probe_us()}
            checkpoint()
            one["copy_s"] = copy_reference(stack, lines, repeats=1)[0]
            checkpoint()
            one["binary_copy_s"] = copy_reference(stack, binary, repeats=1, copy=binary_copy)[0]
            checkpoint()
            one["grouped_copy_s"] = copy_reference(stack, grouped, repeats=1, copy=binary_copy)[0]
            stack.execute("TRUNCATE price_bars")
            checkpoint()
            one["ingest"], one["cpu_us_per_row"] = timed_drain(stack, n, f"bench-ingest-{r}", args.batch_size)
            cpu = one["cpu_us_per_row"]
            assert stack.scalar("SELECT count(*) FROM price_bars") == n
            checkpoint()
            one["replay"], one["replay_cpu_us_per_row"] = timed_drain(stack, n, f"bench-replay-{r}", args.batch_size)
            assert stack.scalar("SELECT count(*) FROM price_bars") == n
            one["load_after"] = load()
            copy_rate, binary_rate, grouped_rate = n / one["copy_s"], n / one["binary_copy_s"], n / one["grouped_copy_s"]
            one |= {"copy": copy_rate, "binary_copy": binary_rate, "grouped_copy": grouped_rate,
                    "ratio": one["ingest"] / copy_rate,
                    "replay_ratio": one["replay"] / copy_rate}
            rounds.append(one)
            print(f"round {r + 1}: ingest {one['ingest']:,.0f} rows/s = {one['ratio']:.0%} of text COPY "
                  f"({copy_rate:,.0f}), {one['ingest'] / binary_rate:.0%} of binary COPY ({binary_rate:,.0f}), "
                  f"{one['ingest'] / grouped_rate:.0%} of binary grouped by symbol ({grouped_rate:,.0f}); "
                  f"replay {one['replay']:,.0f} = {one['replay_ratio']:.0%}; CPU µs/row {cpu}; "
                  f"load {one['load_before']} -> {one['load_after']}; probe {one['cpu_probe_us_before']} µs")
    finally:
        stack.destroy()

    def median(key: str) -> float:
        return statistics.median(x[key] for x in rounds)

    ratio, replay_ratio = median("ratio"), median("replay_ratio")
    ingest_rate, replay_rate, copy_rate, binary_rate = median("ingest"), median("replay"), median("copy"), \
        median("binary_copy")
    grouped_rate = median("grouped_copy")
    result = {
        "benchmark": "ingest",
        "command": f"make bench  (.venv/bin/python bench/ingest.py --bars {n} --symbols {args.symbols}"
                   f" --batch-size {args.batch_size} --rounds {args.rounds})",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "bars": n,
        "symbols": args.symbols,
        "method": "rounds of (text COPY, binary COPY, binary COPY grouped by symbol, ingest, replay), each ratio "
                  "within its round; medians over rounds",
        "ratio_to_copy": round(ratio, 3),
        "replay_ratio_to_copy": round(replay_ratio, 3),
        "ratio_to_copy_per_round": [round(x["ratio"], 3) for x in rounds],
        "replay_ratio_to_copy_per_round": [round(x["replay_ratio"], 3) for x in rounds],
        "ingestor_rows_per_s": round(ingest_rate),
        "replay_rows_per_s": round(replay_rate),
        "copy_rows_per_s": round(copy_rate),
        "binary_copy_rows_per_s": round(binary_rate),
        "binary_grouped_copy_rows_per_s": round(grouped_rate),
        "ratio_to_binary_copy": round(median_of(rounds, lambda x: x["ingest"] / x["binary_copy"]), 3),
        "replay_ratio_to_binary_copy": round(median_of(rounds, lambda x: x["replay"] / x["binary_copy"]), 3),
        "ratio_to_binary_grouped_copy": round(median_of(rounds, lambda x: x["ingest"] / x["grouped_copy"]), 3),
        "targets": {"new_rows_ratio": 0.85, "replay_ratio": 0.5},
        "rounds": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in x.items()} for x in rounds],
        "producer_bars_per_s": round(n / produce_s),
        "ingestor_batch_size": args.batch_size,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    per_round = " / ".join(f"{x['ratio']:.0%}" for x in rounds)
    per_round_replay = " / ".join(f"{x['replay_ratio']:.0%}" for x in rounds)
    table = (
        f"| what (median of {len(rounds)} rounds) | rows/s | vs text COPY (each round) | vs binary COPY |\n"
        "|---|---:|---:|---:|\n"
        f"| stockpipe ingestor, Kafka `raw` → `price_bars` (sustained) | {ingest_rate:,.0f} | {ratio:.0%}"
        f" ({per_round}) | {result['ratio_to_binary_copy']:.0%} |\n"
        f"| stockpipe ingestor, replay of stored rows (conflict path) | {replay_rate:,.0f} | {replay_ratio:.0%}"
        f" ({per_round_replay}) | {result['replay_ratio_to_binary_copy']:.0%} |\n"
        f"| PostgreSQL text `COPY` of the same rows, prebuilt buffer (the target's reference) | {copy_rate:,.0f}"
        f" | 100% | {copy_rate / binary_rate:.0%} |\n"
        f"| PostgreSQL binary `COPY` of the same rows, prebuilt buffer | {binary_rate:,.0f}"
        f" | {binary_rate / copy_rate:.0%} | 100% |\n"
        f"| PostgreSQL binary `COPY` of the same rows grouped by symbol, prebuilt buffer | {grouped_rate:,.0f}"
        f" | {grouped_rate / copy_rate:.0%} | {grouped_rate / binary_rate:.0%} |\n"
    )
    (RESULTS / "ingest.md").write_text(
        f"Ingest benchmark, {n:,} bars of {args.symbols} symbols, {result['when']}, "
        f"`{result['command']}`\n\n{table}")
    print(table)
    print("targets (median of rounds): new rows >= 85% of COPY:", "met" if ratio >= 0.85 else "NOT met",
          "| replay >= 50% of COPY:", "met" if replay_ratio >= 0.5 else "NOT met",
          f"| rounds meeting 85%: {sum(x['ratio'] >= 0.85 for x in rounds)} of {len(rounds)}")
    return 0


def median_of(rounds: list[dict], f: Callable[[dict], float]) -> float:
    return statistics.median(map(f, rounds))


if __name__ == "__main__":
    sys.exit(main())
