"""Nothing stops a service and nothing is lost: refused rows, outages with rebalances, SIGTERM in
every state. Real processes, real Kafka and PostgreSQL."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stockpipe.common.messages import Bar, Codec

from harness import TEST_STATE, Stack, http_get, infra, json_body, metrics_of, wait_for

pytestmark = pytest.mark.integration

BARS = Codec(Bar)
T0 = datetime(2024, 1, 2, tzinfo=UTC)


def bar(symbol: str, i: int, close: float = 10.5) -> bytes:
    return BARS.encode(Bar(symbol=symbol, ts=T0 + timedelta(minutes=i), interval="1m", open=close, high=close + 1,
                           low=close - 0.5, close=close, volume=100, source="synthetic"))


def consumed(port: int, topic: str) -> float:
    """The service's stockpipe_messages_consumed_total for ``topic`` (0 before it serves HTTP)."""
    try:
        return metrics_of(port).get(("stockpipe_messages_consumed_total", (("topic", topic),)), 0)
    except OSError:
        return 0


def rows(stack: Stack, table: str = "price_bars") -> int:
    return stack.scalar(f"SELECT count(*) FROM {table}")


@contextmanager
def private_postgres(stack: Stack, tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    """A PostgreSQL of the test's own (stopping it disturbs no other test), on the shared Kafka."""
    pg_state = TEST_STATE / f"pg-{stack.database}"
    env = infra("up", pg_state, {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap})
    private = Stack({"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, "POSTGRES_DSN": env["POSTGRES_DSN"]},
                    tmp_path, prefix=stack.prefix)
    try:
        private.create()
        yield private, pg_state
    finally:
        for p in private.processes:  # also when an assertion failed half-way
            p.kill()
        infra("destroy", pg_state)
        shutil.rmtree(pg_state, ignore_errors=True)


def postgres_up(stack: Stack, pg_state: Path) -> None:
    infra("up", pg_state, {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap})


def test_rows_the_database_refuses_are_isolated_and_dead_lettered_and_the_rest_is_stored(stack: Stack) -> None:
    # A constraint only this database has: decoding accepts these bars, PostgreSQL refuses them
    # (as it would a value decoding let through by mistake). The batch is split until the two
    # refused rows stand alone.
    stack.execute("ALTER TABLE price_bars ADD CONSTRAINT test_refuses_big CHECK (close < 1000)")
    ingestor = stack.start("ingestor")
    ingestor.wait_ready()
    values = [bar("AAPL", i, 5000.0 if i in (17, 301) else 10.5) for i in range(500)]
    stack.produce("raw", values)
    wait_for(lambda: rows(stack) == 498, 60, what="the 498 rows the database takes")
    dead = wait_for(lambda: len(d := stack.consume_all("dlq")) == 2 and d, 30, what="two dead letters")
    assert sorted(m.value() for m in dead) == sorted([values[17], values[301]])
    for m in dead:
        headers = dict(m.headers())
        assert headers["error"].startswith(b"db_refused:"), headers["error"]
        assert b"test_refuses_big" in headers["error"]
    assert ingestor.alive()
    pid = ingestor.proc.pid
    stack.produce("raw", [bar("AAPL", 1000 + i) for i in range(10)])
    wait_for(lambda: rows(stack) == 508, 30, what="later rows")
    assert ingestor.proc.pid == pid and ingestor.alive()
    assert metrics_of(ingestor.port)[("stockpipe_dlq_messages_total", (("reason", "db_refused"),))] == 2
    time.sleep(1)
    assert len(stack.consume_all("dlq")) == 2  # once each
    assert ingestor.terminate() == 0


def test_rebalance_during_a_postgres_outage_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    with private_postgres(stack, tmp_path) as (private, pg_state):
        first = private.start("ingestor", INGESTOR_BATCH_SIZE=200)
        first.wait_ready()
        symbols = [f"S{i:02d}" for i in range(24)]  # spread over the 6 partitions
        private.produce_keyed("raw", [(s.encode(), bar(s, i)) for i in range(50) for s in symbols])
        wait_for(lambda: rows(private) == 1200, 60, what="the first 1200 rows")

        infra("down", pg_state)
        wait_for(lambda: http_get(first.port, "/readyz")[0] == 503, 20, what="/readyz 503")
        private.produce_keyed("raw", [(s.encode(), bar(s, i)) for i in range(50, 100) for s in symbols])
        time.sleep(3)  # the first ingestor holds what it read
        body = json_body(http_get(first.port, "/readyz")[1])
        assert "consumer" in body["reasons"] and "holding" in body["reasons"]["consumer"]

        second = private.start("ingestor", INGESTOR_BATCH_SIZE=200)  # joins: partitions move while holding
        wait_for(lambda: "partitions revoked" in first.output(), 60, what="a rebalance")
        time.sleep(2)
        assert first.alive() and second.alive()
        assert http_get(first.port, "/healthz")[0] == 200

        postgres_up(private, pg_state)
        wait_for(lambda: rows(private) == 2400, 90, what="all 2400 rows after the outage")
        assert private.scalar("SELECT count(DISTINCT (symbol, ts)) FROM price_bars") == 2400
        wait_for(lambda: http_get(first.port, "/readyz")[0] == 200, 30, what="first ready again")
        wait_for(lambda: http_get(second.port, "/readyz")[0] == 200, 30, what="second ready")
        # Both consume again: new bars on every partition are stored.
        private.produce_keyed("raw", [(s.encode(), bar(s, 100)) for s in symbols])
        wait_for(lambda: rows(private) == 2424, 60, what="bars after the outage, on every partition")
        assert first.terminate() == 0 and second.terminate() == 0


def test_sigterm_while_holding_a_batch_through_an_outage_exits_0_in_time(stack: Stack, tmp_path: Path) -> None:
    with private_postgres(stack, tmp_path) as (private, pg_state):
        ingestor = private.start("ingestor", SHUTDOWN_TIMEOUT="10")
        ingestor.wait_ready()
        infra("down", pg_state)
        private.produce("raw", [bar("AAPL", i) for i in range(100)])
        wait_for(lambda: "holding" in ingestor.output(), 30, what="the ingestor holding a batch")
        start = time.monotonic()
        assert ingestor.terminate(timeout=15) == 0
        assert time.monotonic() - start < 10
        postgres_up(private, pg_state)
        again = private.start("ingestor")
        wait_for(lambda: rows(private) == 100, 60, what="the held batch, read again after the restart")
        assert again.terminate() == 0


def test_sigterm_during_a_long_state_rebuild_exits_0_in_time(stack: Stack) -> None:
    n = 300_000
    stack.run_module("stockpipe.producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                     SYNTHETIC_START="2024-01-02T00:00:00Z", MAX_MESSAGES=str(n), SYNTHETIC_SYMBOLS="20",
                     COMPANIES="false")
    analytics = stack.start("analytics")
    wait_for(lambda: consumed(analytics.port, stack.topic("raw")) >= n, 240, interval=1.0,
             what="analytics through the backlog")
    assert analytics.terminate() == 0
    # Committed at the end: the next start replays all 300k bars to rebuild its state.
    again = stack.start("analytics")
    def rebuilding() -> bool:
        try:
            code, body = http_get(again.port, "/readyz")
        except OSError:
            return False
        return code == 503 and b"rebuilding" in body

    wait_for(rebuilding, 60, interval=0.1, what="a rebuild under way")
    start = time.monotonic()
    assert again.terminate(timeout=15) == 0
    assert time.monotonic() - start < 10
    assert "state rebuilt" not in again.output()  # it was stopped mid-way


def test_sigterm_while_kafka_cannot_acknowledge_exits_0_in_time(stack: Stack, tmp_path: Path) -> None:
    # A Kafka of the test's own: stopping it disturbs no other test.
    kafka_state = TEST_STATE / f"kafka-{stack.database}"
    env = infra("up", kafka_state, {"POSTGRES_DSN": stack.admin_dsn})
    private = Stack({"KAFKA_BOOTSTRAP_SERVERS": env["KAFKA_BOOTSTRAP_SERVERS"], "POSTGRES_DSN": stack.admin_dsn},
                    tmp_path, database=stack.database)
    try:
        for module in ("stockpipe.common.topics",):
            private.run_module(module, TOPIC_PARTITIONS="6")
        private.run_module("stockpipe.producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                           SYNTHETIC_START="2024-01-02T00:00:00Z", MAX_MESSAGES="200000", SYNTHETIC_SYMBOLS="20",
                           COMPANIES="false")
        analytics = private.start("analytics", ANALYTICS_BATCH_SIZE="500")
        wait_for(lambda: consumed(analytics.port, private.topic("raw")) > 1000, 120, interval=0.2,
                 what="analytics under way")
        infra("down", kafka_state)  # outputs can no longer be acknowledged
        wait_for(lambda: "not acknowledged" in analytics.output() or "waiting" in analytics.output(), 60,
                 what="analytics waiting for Kafka")
        assert analytics.alive() and http_get(analytics.port, "/healthz")[0] == 200
        start = time.monotonic()
        assert analytics.terminate(timeout=15) == 0
        assert time.monotonic() - start < 10
    finally:
        for p in private.processes:
            p.kill()
        infra("destroy", kafka_state)
        shutil.rmtree(kafka_state, ignore_errors=True)
