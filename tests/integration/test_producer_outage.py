"""The producer through broker outages, with a real Kafka that is stopped and started again.

A private Kafka (its own state dir, so stopping it disturbs no other test) and the session's
PostgreSQL. The producer streams synthetic bars of four 24/7 series at 20 bars/s; the
broker is stopped for 20 s, and for 40 s (librdkafka's own timeouts long exceeded; the
producer has no delivery timeout: it retries until Kafka acknowledges), then started again.
Afterwards ``raw`` holds every bar the producer published exactly once, in order, with no
gap: per series, consecutive minutes from the first bar to the last, each ts once, in
offset order. A third case sends SIGTERM while the broker is down: the producer exits 0
within SHUTDOWN_TIMEOUT, and after a restart the series are still whole.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from stockpipe.common.errors import TransientError
from stockpipe.common.messages import Bar, Codec

from harness import TEST_STATE, ServiceProcess, Stack, http_get, infra, json_body, wait_for

pytestmark = pytest.mark.integration

BARS = Codec(Bar)
SYMBOLS = 4
RATE = 20


@pytest.fixture(scope="module")
def kafka_state(infra_env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    state = TEST_STATE / "kafka-outage"
    extra = {"POSTGRES_DSN": infra_env["POSTGRES_DSN"]}
    try:
        env = infra("up", state, extra)
        yield state, {"KAFKA_BOOTSTRAP_SERVERS": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "POSTGRES_DSN": infra_env["POSTGRES_DSN"]}
    finally:
        infra("destroy", state, extra)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def outage_stack(kafka_state, tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    state, env = kafka_state
    stack = Stack(env, tmp_path).create()
    try:
        yield stack, state
    finally:
        stack.destroy()


def start_producer(stack: Stack, start: datetime) -> ServiceProcess:
    producer = stack.start("producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_SYMBOLS=SYMBOLS,
                           SYNTHETIC_RATE=RATE, SYNTHETIC_START=start.isoformat(), COMPANIES="false",
                           SHUTDOWN_TIMEOUT="10")
    producer.wait_ready()
    return producer


def published(producer: ServiceProcess) -> int:
    return sum(int(n) for n in re.findall(r"published (\d+) bars\n", producer.output()))


def assert_whole_series(stack: Stack, expected_total: int | None = None) -> int:
    """Every series on raw: each minute once, no gap, in offset order; returns the count."""
    by_series: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    messages = stack.consume_all("raw", timeout=30)
    for msg in messages:
        bar = BARS.decode(msg.value())
        by_series[bar.symbol].append((msg.offset(), bar.ts))
    assert len(by_series) == SYMBOLS
    for symbol, rows in by_series.items():
        ts = [t for _, t in sorted(rows)]  # in offset order
        steps = {b - a for a, b in zip(ts, ts[1:])}
        assert steps == {timedelta(minutes=1)}, f"{symbol}: gap, duplicate or reorder: {sorted(steps)[:5]}"
    if expected_total is not None:
        assert len(messages) == expected_total
    return len(messages)


def raw_count(stack: Stack) -> int:
    """Messages on raw, or -1 while the broker (just restarted) has no leader for a partition yet."""
    try:
        return len(stack.consume_all("raw", timeout=30))
    except (KafkaException, TransientError):
        return -1


@pytest.mark.parametrize("outage", [20, 40])
def test_no_gap_and_no_duplicate_through_a_broker_outage(outage_stack, outage: int) -> None:
    stack, state = outage_stack
    extra = {"POSTGRES_DSN": stack.admin_dsn}
    producer = start_producer(stack, datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2))
    wait_for(lambda: raw_count(stack) >= 100, 30, what="bars flowing")

    infra("down", state, extra)
    down_at = time.monotonic()
    code, body = wait_for(lambda: (r := http_get(producer.port, "/readyz"))[0] == 503 and r, 20,
                          what="/readyz 503 while Kafka is down")
    assert "kafka" in json_body(body)["reasons"]
    while time.monotonic() - down_at < outage:
        assert producer.alive()
        assert http_get(producer.port, "/healthz")[0] == 200  # waiting, not stuck
        time.sleep(2)
    infra("up", state, extra)

    wait_for(lambda: http_get(producer.port, "/readyz")[0] == 200, 60, what="/readyz 200 again")
    before = raw_count(stack)
    wait_for(lambda: raw_count(stack) >= before + 100, 60, what="bars flowing again")
    t0 = time.monotonic()
    assert producer.terminate(timeout=15) == 0
    assert time.monotonic() - t0 < 10
    sent = published(producer)
    assert sent > (outage + 10) * RATE * 0.5  # it kept producing through the outage
    assert_whole_series(stack, expected_total=sent)


def test_sigterm_while_the_broker_is_down_exits_in_time_and_a_restart_fills_in(outage_stack) -> None:
    stack, state = outage_stack
    extra = {"POSTGRES_DSN": stack.admin_dsn}
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    producer = start_producer(stack, start)
    wait_for(lambda: raw_count(stack) >= 100, 30, what="bars flowing")
    infra("down", state, extra)
    time.sleep(5)  # bars pile up unacknowledged
    t0 = time.monotonic()
    assert producer.terminate(timeout=15) == 0
    assert time.monotonic() - t0 < 10  # SHUTDOWN_TIMEOUT, although nothing could be flushed
    assert "not acknowledged by Kafka" in producer.output()
    infra("up", state, extra)

    again = start_producer(stack, start)
    wait_for(lambda: raw_count(stack) >= published(producer) + 200, 60, what="the restarted producer's bars")
    assert again.terminate(timeout=15) == 0
    assert_whole_series(stack)
