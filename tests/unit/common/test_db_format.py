"""COPY text formatting and offset bookkeeping (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stockpipe.common.db import copy_field, copy_line, copy_text
from stockpipe.common.kafka import Message, next_offsets


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "\\N"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.30000000000000004"),  # repr round-trips exactly
        (float("nan"), "NaN"),
        (7, "7"),
        ("a\tb\nc\\d", "a\\tb\\nc\\\\d"),
        (datetime(2024, 1, 2, 3, 4, tzinfo=UTC), "2024-01-02T03:04:00+00:00"),
    ],
)
def test_copy_field(value: object, text: str) -> None:
    assert copy_field(value) == text


def test_copy_line() -> None:
    assert copy_line(["x", None, 2]) == "x\t\\N\t2\n"


def test_plain_copy_text_matches_the_general_formatter() -> None:
    ts = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    rows = [("BRK.B", "1m", ts, 0.1 + 0.2, 1e-07, None, 12345678901, "synthetic"),
            ("ES=F", "1d", ts, 1e300, 2.5, 3.0, 0, "yfinance")]
    fast = copy_text(rows, plain=True).decode().splitlines()
    slow = copy_text(rows).decode().splitlines()
    for f, s in zip(fast, slow, strict=True):
        f_fields, s_fields = f.split("\t"), s.split("\t")
        assert f_fields[2] == "2024-01-02T03:04:05.678000Z" and s_fields[2] == ts.isoformat()
        assert [float(x) if x[0].isdigit() else x for x in f_fields[3:]] == \
               [float(x) if x[0].isdigit() else x for x in s_fields[3:]]
        assert f_fields[:2] == s_fields[:2]
    assert copy_text([]) == b""
    versioned = [(1, *r) for r in rows]
    assert copy_text(versioned, plain=True, versioned=True) == copy_text(rows, plain=True)
    assert copy_text(versioned, versioned=True) == copy_text(rows)


def _msg(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset)


def test_next_offsets_is_one_past_the_last_per_partition() -> None:
    # As consumed: each partition's messages in offset order, partitions interleaved.
    msgs = [_msg("raw", 0, 5), _msg("raw", 0, 6), _msg("raw", 1, 3), _msg("alerts", 0, 0), _msg("raw", 0, 9)]
    got = {(tp.topic, tp.partition): tp.offset for tp in next_offsets(msgs)}
    assert got == {("raw", 0): 10, ("raw", 1): 4, ("alerts", 0): 1}
    assert next_offsets([]) == []


def test_next_offsets_never_commits_past_a_message_not_in_the_batch() -> None:
    # Out of order (Kafka does not deliver so): the commit may fall short, which re-reads, never beyond.
    got = next_offsets([_msg("raw", 0, 9), _msg("raw", 0, 7)])
    assert [(tp.topic, tp.partition) for tp in got] == [("raw", 0)] and got[0].offset <= 10
