"""The shared partition reader on a real broker: ranges, tails, and history that retention dropped."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from stockpipe.common.consume import REBUILD_INCOMPLETE, replay_to_committed
from stockpipe.common.kafka import BatchConsumer
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.reader import BEGINNING, END, ReadStopped, read_partitions, tail
from stockpipe.common.settings import CommonSettings

from harness import Stack

pytestmark = pytest.mark.integration


def fill(stack: Stack, n: int) -> None:
    """``n`` messages b"0".."n-1" on partition of key "K" of raw (one key: one partition)."""
    stack.produce_keyed("raw", [(b"K", str(i).encode()) for i in range(n)])


def partition_of_k(stack: Stack, settings: CommonSettings) -> int:
    got: list = []
    read_partitions(settings, stack.topic("raw"), {p: (BEGINNING, END) for p in range(6)}, got.append)
    return got[0].partition()


def test_ranges_tails_and_dropped_history(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    topic = stack.topic("raw")
    fill(stack, 100)
    p = partition_of_k(stack, settings)

    def read(start: int, end: int) -> tuple[list[int], object]:
        got: list = []
        stats = read_partitions(settings, topic, {p: (start, end)}, got.append)
        return [int(m.value()) for m in got], stats

    values, stats = read(BEGINNING, END)
    assert values == list(range(100)) and not stats.truncated
    assert read(10, 20)[0] == list(range(10, 20))
    assert read(tail(5), END)[0] == [95, 96, 97, 98, 99]
    assert read(100, END)[0] == []  # an empty range ends at once

    # Retention (here: delete_records) drops the first 40: the reader starts at the first
    # retained offset and says what is missing, never jumps to the end.
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, p, 40)]).values():
        future.result(timeout=30)
    values, stats = read(BEGINNING, END)
    assert values == list(range(40, 100))
    assert stats.truncated == {p: (0, 40)}
    values, stats = read(10, 50)
    assert values == list(range(40, 50)) and stats.truncated == {p: (10, 40)}

    # A stop flag ends a read at once.
    stop = Shutdown()
    stop.event.set()
    with pytest.raises(ReadStopped):
        read_partitions(settings, topic, {p: (BEGINNING, END)}, lambda m: None, stop=stop.event)

    # The state rebuild (up to the group's committed offset) says so in a log line and a metric.
    group = "rebuild-test"
    consumer = BatchConsumer(settings, group, [topic])
    try:
        consumer._consumer.commit(offsets=[TopicPartition(topic, p, 70)], asynchronous=False)
        before = REBUILD_INCOMPLETE.labels(topic)._value.get()
        fed: list = []
        with caplog.at_level(logging.WARNING):
            stats = replay_to_committed(settings, consumer, [TopicPartition(topic, p)], fed.append,
                                        shutdown=Shutdown(), beat=lambda: None)
        assert [int(m.value()) for m in fed] == list(range(40, 70))
        assert REBUILD_INCOMPLETE.labels(topic)._value.get() == before + 1
        assert "retention dropped offsets before 40" in caplog.text
    finally:
        consumer.close()
