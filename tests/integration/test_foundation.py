"""The foundation through real processes: producer → Kafka ``raw`` → ingestor → PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from stockpipe.common.messages import Bar, Codec

from harness import TEST_STATE, Stack, http_get, infra, json_body, metrics_of, wait_for

pytestmark = pytest.mark.integration

BARS = Codec(Bar)
START = "2024-01-02T00:00:00Z"


def synthetic_env(n: int, **extra: object) -> dict[str, object]:
    return {"PRODUCER_SOURCE": "synthetic", "SYNTHETIC_RATE": "0", "SYNTHETIC_START": START,
            "MAX_MESSAGES": str(n), **extra}


def rows_in(stack: Stack) -> int:
    return stack.scalar("SELECT count(*) FROM price_bars")


def assert_table_equals_topic(stack: Stack) -> None:
    """Every distinct bar on raw is a row, with the same values, and nothing else is."""
    sent = {}
    for msg in stack.consume_all("raw"):
        b = BARS.decode(msg.value())
        sent[(b.symbol, b.interval, b.ts)] = (b.open, b.high, b.low, b.close, b.volume, b.source)
    stored = {(s, i, ts): rest for s, i, ts, *rest in
              [(r[0], r[1], r[2], *r[3:]) for r in stack.query(
                  'SELECT symbol, "interval", ts, open, high, low, close, volume, source FROM price_bars')]}
    assert len(stored) == len(sent)
    assert {k: tuple(v) for k, v in stored.items()} == sent


def test_n_synthetic_bars_in_exactly_n_rows_out(stack: Stack) -> None:
    n = 5_000
    ingestor = stack.start("ingestor")
    ingestor.wait_ready()
    producer = stack.run_module("stockpipe.producer", **synthetic_env(n, TICKERS="AAPL,MSFT,BRK.B"))
    assert f"published {n} bars" in producer.stdout
    wait_for(lambda: rows_in(stack) == n, 60, what=f"{n} rows")
    assert_table_equals_topic(stack)
    assert stack.scalar("SELECT count(DISTINCT symbol) FROM price_bars") == 3
    assert stack.scalar("SELECT count(*) FROM companies") == 3

    # /metrics is valid Prometheus text with the shared metric names.
    metrics = wait_for(lambda: (m := metrics_of(ingestor.port)).get(
        ("stockpipe_messages_consumed_total", (("topic", stack.topic("raw")),))) == n and m, 20,
        what="consumed counter")
    assert any(name == "stockpipe_processing_seconds_bucket" for name, _ in metrics)
    assert metrics[("stockpipe_dependency_up", (("dependency", "postgres"),))] == 1
    code, body = http_get(ingestor.port, "/healthz")
    assert code == 200 and json_body(body)["status"] == "ok"

    # SIGTERM: clean exit 0 well within 10 s.
    start = time.monotonic()
    assert ingestor.terminate(timeout=12) == 0
    assert time.monotonic() - start < 10
    assert "stopped cleanly" in ingestor.output()


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(stack: Stack) -> None:
    n = 200_000
    stack.run_module("stockpipe.producer", **synthetic_env(n, SYNTHETIC_SYMBOLS=50, COMPANIES="false"))
    # Small batches so that the kill lands between a database commit and its offset commit.
    ingestor = stack.start("ingestor", INGESTOR_BATCH_SIZE=3000)
    wait_for(lambda: rows_in(stack) >= 20_000, 60, interval=0.05, what="ingestion under way")
    ingestor.kill()
    partial = rows_in(stack)
    assert partial < n, "the ingestor finished before it could be killed mid-stream"
    again = stack.start("ingestor", INGESTOR_BATCH_SIZE=3000)
    wait_for(lambda: rows_in(stack) == n, 120, what=f"{n} rows after restart")
    time.sleep(1.0)  # anything still arriving would be a duplicate delivery
    assert rows_in(stack) == n
    assert_table_equals_topic(stack)
    assert again.terminate() == 0


POISON = {
    "malformed JSON": (b'{"v":1,"symbol":"AAPL",', "malformed"),
    "missing field": (b'{"v":1,"symbol":"AAPL","ts":"2024-01-02T00:00:00Z","interval":"1m","open":1.0,'
                      b'"high":1.0,"low":1.0,"volume":1,"source":"synthetic"}', "missing_field"),
    "NaN": (b'{"v":1,"symbol":"AAPL","ts":"2024-01-02T00:00:00Z","interval":"1m","open":NaN,'
            b'"high":1.0,"low":1.0,"close":1.0,"volume":1,"source":"synthetic"}', "malformed"),
    "negative price": (b'{"v":1,"symbol":"AAPL","ts":"2024-01-02T00:00:00Z","interval":"1m","open":-1.0,'
                       b'"high":1.0,"low":1.0,"close":1.0,"volume":1,"source":"synthetic"}', "invalid_field"),
    "high < low": (b'{"v":1,"symbol":"AAPL","ts":"2024-01-02T00:00:00Z","interval":"1m","open":1.0,'
                   b'"high":0.5,"low":0.9,"close":1.0,"volume":1,"source":"synthetic"}', "inconsistent"),
    "empty value": (None, "empty"),
}


def good_bar(minute: int) -> bytes:
    return BARS.encode(Bar(symbol="AAPL", ts=datetime(2024, 1, 2, 0, minute, tzinfo=UTC), interval="1m",
                           open=10.0, high=11.0, low=9.0, close=10.5, volume=100, source="synthetic"))


def test_poison_messages_go_to_dlq_with_reasons_and_the_service_keeps_running(stack: Stack) -> None:
    ingestor = stack.start("ingestor")
    ingestor.wait_ready()
    values = [good_bar(0), *(v for v, _ in POISON.values()), good_bar(1)]
    stack.produce("raw", values)  # one key: one partition, in this order
    wait_for(lambda: rows_in(stack) == 2, 30, what="the two good bars")
    dead = wait_for(lambda: len(d := stack.consume_all("dlq")) == len(POISON) and d, 30, what="dlq messages")
    raw_offsets = {m.value(): m.offset() for m in stack.consume_all("raw")}
    for msg, (name, (value, reason)) in zip(dead, POISON.items()):
        headers = {k: v.decode() for k, v in msg.headers()}
        assert msg.value() == value, name  # the bytes, unchanged (a null value stays null)
        assert headers["error"].startswith(reason), (name, headers["error"])
        assert headers["source_topic"] == stack.topic("raw")
        assert headers["source_partition"] == str(next(m.partition() for m in stack.consume_all("raw")))
        if value is not None:
            assert headers["source_offset"] == str(raw_offsets[value])
    assert ingestor.alive()
    metrics = metrics_of(ingestor.port)
    for _, reason in POISON.values():
        assert metrics[("stockpipe_dlq_messages_total", (("reason", reason),))] >= 1
    assert ingestor.terminate() == 0


def test_readyz_follows_postgres_and_nothing_is_lost_across_an_outage(stack: Stack, tmp_path: Path) -> None:
    # A PostgreSQL of its own, so stopping it disturbs no other test.
    # Under the test state dir: pytest's tmp_path is private to root, and initdb runs as postgres.
    pg_state = TEST_STATE / f"pg-{stack.database}"
    env = infra("up", pg_state, {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap})
    private = Stack({"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "POSTGRES_DSN": env["POSTGRES_DSN"]},
                    tmp_path, prefix=stack.prefix)
    try:
        private.create()
        ingestor = private.start("ingestor", INGESTOR_BATCH_SIZE=500)
        ingestor.wait_ready()
        private.produce("raw", (good_bar(m % 60).replace(b'"AAPL"', f'"S{m // 60}"'.encode()) for m in range(600)))
        wait_for(lambda: private.scalar("SELECT count(*) FROM price_bars") == 600, 30, what="first 600 rows")

        infra("down", pg_state)
        code, body = wait_for(lambda: (r := http_get(ingestor.port, "/readyz"))[0] == 503 and r, 20,
                              what="/readyz 503")
        assert "postgres" in json_body(body)["reasons"]
        # The first batch after the outage starts with a poison message: the batch's write
        # keeps failing and is retried, and the message must reach the dlq once all the same.
        private.produce("raw", [b"not a bar", *(good_bar(m % 60).replace(b'"AAPL"', f'"T{m // 60}"'.encode())
                                               for m in range(600))])
        time.sleep(3)  # the ingestor holds the batch and retries while the database is gone
        assert ingestor.alive()
        assert http_get(ingestor.port, "/healthz")[0] == 200

        assert infra("up", pg_state, {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap})["POSTGRES_DSN"] == env["POSTGRES_DSN"]
        wait_for(lambda: http_get(ingestor.port, "/readyz")[0] == 200, 60, what="/readyz 200 again")
        wait_for(lambda: private.scalar("SELECT count(*) FROM price_bars") == 1200, 60, what="all 1200 rows")
        assert private.scalar("SELECT count(DISTINCT (symbol, ts)) FROM price_bars") == 1200
        assert [m.value() for m in private.consume_all("dlq")] == [b"not a bar"]  # once, despite the retries
        assert ingestor.terminate() == 0
    finally:
        for p in private.processes:  # also when an assertion failed half-way
            p.kill()
        infra("destroy", pg_state)
        shutil.rmtree(pg_state, ignore_errors=True)


def test_producer_restart_continues_where_it_left_off(stack: Stack) -> None:
    first = stack.run_module("stockpipe.producer", **synthetic_env(100, TICKERS="AAPL,MSFT"))
    second = stack.run_module("stockpipe.producer", **synthetic_env(100, TICKERS="AAPL,MSFT"))
    assert "published 100 bars" in first.stdout and "published 100 bars" in second.stdout
    bars = [BARS.decode(m.value()) for m in stack.consume_all("raw")]
    keys = [(b.symbol, b.ts) for b in bars]
    assert len(bars) == 200 and len(set(keys)) == 200
    aapl = sorted(b.ts for b in bars if b.symbol == "AAPL")
    assert all((b - a).total_seconds() == 60 for a, b in zip(aapl, aapl[1:]))  # no gap, no repeat


def test_live_producer_stops_on_sigterm_with_exit_0(stack: Stack) -> None:
    producer = stack.start("producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="20", COMPANIES="false")
    producer.wait_ready()
    wait_for(lambda: len(stack.consume_all("raw")) >= 10, 30, what="live bars")
    start = time.monotonic()
    assert producer.terminate(timeout=12) == 0
    assert time.monotonic() - start < 10


def test_migrations_are_safe_twice_and_concurrently(stack: Stack) -> None:
    conn = psycopg2.connect(stack.admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE " + stack.database + "_m")
    conn.close()
    dsn = stack.dsn + "_m"
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "stockpipe.common.migrate"], env=stack.env(POSTGRES_DSN=dsn),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        assert sum("0001.initial-schema" in o for o in outputs) == 1  # applied exactly once
        again = stack.run_module("stockpipe.common.migrate", POSTGRES_DSN=dsn)
        assert "up to date" in again.stdout
    finally:
        conn = psycopg2.connect(stack.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {stack.database}_m WITH (FORCE)")
        conn.close()


def test_topics_are_created_idempotently(stack: Stack) -> None:
    out = stack.run_module("stockpipe.common.topics")
    assert "none (all exist)" in out.stdout
    for kind in ("raw", "indicators", "alerts", "forecasts", "dlq"):
        stack.consume_all(kind)
