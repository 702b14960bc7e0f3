"""BinaryRows: rows → PostgreSQL binary COPY data, read back by an independent parser.

The round trip through a real PostgreSQL (the same bits as a text COPY) is in
tests/integration/test_table_writer.py; this pins the format and the fallbacks.
"""

from __future__ import annotations

import math
import random
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from msgspec.structs import astuple

from stockpipe.common.db import copy_text
from stockpipe.common.messages import Bar
from stockpipe.ingestor.binary import BinaryRows
from stockpipe.ingestor.sinks import SINKS

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
KINDS = ("text", "timestamptz", "text", "float8", "float8?", "int8")


def parse(data: bytes, kinds: tuple[str, ...]) -> list[tuple]:
    """A plain reading of the format (PostgreSQL's COPY documentation), one field at a time."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00" and data[11:19] == bytes(8)
    pos, rows = 19, []
    while True:
        (count,) = struct.unpack_from("!h", data, pos)
        pos += 2
        if count == -1:
            assert pos == len(data)
            return rows
        assert count == len(kinds)
        row = []
        for kind in kinds:
            (size,) = struct.unpack_from("!i", data, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            raw = data[pos:pos + size]
            pos += size
            if kind == "text":
                row.append(raw.decode("ascii"))
            elif kind == "timestamptz":
                row.append(PG_EPOCH + timedelta(microseconds=struct.unpack("!q", raw)[0]))
            elif kind == "int8":
                row.append(struct.unpack("!q", raw)[0])
            else:
                row.append(struct.unpack("!d", raw)[0])
        rows.append(tuple(row))


def random_rows(n: int, seed: int = 7) -> list[tuple]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        seconds = rnd.uniform(-2.19e9, 2.19e9)
        ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(seconds), microseconds=rnd.randrange(10**6))
        symbol = "".join(rnd.choice("ABCXYZ0189.^=-") for _ in range(rnd.randint(1, 15)))
        maybe = rnd.choice([None, 0.0, -0.0, 5e-324, 1e308, rnd.uniform(-1e6, 1e6)])
        rows.append((symbol, ts, rnd.choice(["1m", "15m", "1d"]), rnd.uniform(1e-8, 1e9), maybe,
                     rnd.choice([0, 1, 2**53 + 1, 2**63 - 1, -(2**63)])))
    return rows


def test_rows_read_back_exactly_and_in_order() -> None:
    rows = random_rows(5_000)
    assert parse(BinaryRows(KINDS)(rows), KINDS) == rows  # every microsecond, every bit, in order


def feed_rows(n: int, seed: int = 11) -> list[tuple]:
    """Rows as a feed gives them: 40 symbols sharing each minute's time, a few intervals."""
    rnd = random.Random(seed)
    t0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    return [(f"SYM{i % 40}", t0 + timedelta(minutes=i // 40), rnd.choice(["1m", "5m"]), rnd.uniform(1, 500),
             rnd.choice([None, rnd.uniform(-1, 1)]), rnd.randrange(10**9)) for i in range(n)]


def test_repeated_values_read_back_exactly_and_in_order() -> None:
    # Text and times that repeat are converted once per distinct value, then indexed.
    rows = feed_rows(4_000)
    assert parse(BinaryRows(KINDS)(rows), KINDS) == rows
    # The same instant spelled in another zone is the same timestamptz.
    paris = timezone(timedelta(hours=1))
    mixed = [(s, ts.astimezone(paris) if i % 3 else ts, *rest) for i, (s, ts, *rest) in enumerate(rows)]
    assert parse(BinaryRows(KINDS)(mixed), KINDS) == rows


@pytest.mark.parametrize("column, bad", [(0, "SYMé"), (1, datetime(1850, 1, 1, tzinfo=UTC))])
def test_one_bad_value_among_repeated_ones_gives_none(column: int, bad: object) -> None:
    rows = feed_rows(400)
    rows[123] = (*rows[123][:column], bad, *rows[123][column + 1:])
    assert BinaryRows(KINDS)(rows) is None


def test_clustered_rows_go_out_grouped_by_the_column_each_group_in_arrival_order() -> None:
    # Symbols of different lengths (padding dropped per row) and NULLs: the kept bytes move
    # with their rows. Python's sorted is stable: each symbol's rows stay in arrival order.
    rows = [(f"S{(i * 7) % 23}", *rest) for i, (_, *rest) in enumerate(feed_rows(3_000))]
    assert parse(BinaryRows(KINDS, cluster=0)(rows), KINDS) == sorted(rows, key=lambda r: r[0])
    # Nothing to group: one value, or mostly distinct values (sent in arrival order).
    one = [("AAPL", *rest) for _, *rest in rows]
    assert parse(BinaryRows(KINDS, cluster=0)(one), KINDS) == one
    distinct = random_rows(500)
    assert parse(BinaryRows(KINDS, cluster=0)(distinct), KINDS) == distinct
    with pytest.raises(ValueError, match="not text"):
        BinaryRows(KINDS, cluster=1)


@pytest.mark.parametrize("value", ["1m", "", "A" * 40])
def test_a_text_column_of_one_value_reads_back_exactly(value: str) -> None:
    # A batch's interval and source are one value: encoded once, without hashing every row.
    rows = [(value, *r[1:]) for r in feed_rows(300)]
    assert parse(BinaryRows(KINDS)(rows), KINDS) == rows
    assert BinaryRows(KINDS)([("SYMé", *r[1:]) for r in rows]) is None  # one value, not ASCII


def test_versioned_rows_drop_the_leading_v() -> None:
    rows = random_rows(50)
    assert BinaryRows(KINDS, versioned=True)([(1, *r) for r in rows]) == BinaryRows(KINDS)(rows)


def test_not_finite_nullable_floats_become_null_as_in_the_text_path() -> None:
    ts = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [("A", ts, "1m", 1.0, x, 1) for x in (float("nan"), float("inf"), -float("inf"), None, 2.0)]
    assert [r[4] for r in parse(BinaryRows(KINDS)(rows), KINDS)] == [None, None, None, None, 2.0]


@pytest.mark.parametrize("bad, why", [
    (("ÄPPLE", None, None, None, None, None), "not ASCII"),
    ((None, datetime(1900, 4, 14, tzinfo=UTC), None, None, None, None), "before the exact range"),
    ((None, datetime(2039, 9, 19, tzinfo=UTC), None, None, None, None), "after it"),
    ((None, None, None, None, None, 2**63), "beyond int8"),
    ((None, None, None, float("nan"), None, None), "NaN in a NOT NULL float column"),
    ((None, None, None, math.inf, None, None), "inf in a NOT NULL float column"),
])
def test_rows_binary_cannot_hold_give_none(bad: tuple, why: str) -> None:
    good = ("AAPL", datetime(2024, 1, 2, tzinfo=UTC), "1m", 1.0, None, 5)
    row = tuple(g if b is None else b for g, b in zip(good, bad))
    assert BinaryRows(KINDS)([good, row]) is None, why


def test_none_in_a_not_null_float_column_gives_none() -> None:
    assert BinaryRows(KINDS)([("AAPL", datetime(2024, 1, 2, tzinfo=UTC), "1m", None, None, 5)]) is None


def test_timestamps_at_the_edges_of_the_exact_range() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    edges = [epoch + timedelta(seconds=s, microseconds=us) for s in (-2_200_000_000, 2_199_999_999, 0, -1)
             for us in (0, 1, 499_999, 500_000, 999_999) if abs(s + us / 1e6) <= 2.2e9]
    rows = [("A", ts, "1m", 1.0, None, 0) for ts in edges]
    assert [r[1] for r in parse(BinaryRows(KINDS)(rows), KINDS)] == edges


def test_empty_and_malformed() -> None:
    assert parse(BinaryRows(KINDS)([]), KINDS) == []
    with pytest.raises(ValueError, match="columns"):
        BinaryRows(KINDS)([("A", datetime(2024, 1, 2, tzinfo=UTC))])
    with pytest.raises(ValueError, match="kind"):
        BinaryRows(["varchar"])


def test_messages_as_rows_give_the_bytes_of_their_tuples() -> None:
    # The ingestor's bars and indicators are read by attribute, not made into tuples first.
    bars = [Bar(symbol=f"S{i % 7}", ts=datetime(2024, 1, 2, 14, i % 60, tzinfo=UTC), interval="1m", open=1.5,
                high=2.0 + i, low=1.0, close=1.5, volume=i, source="synthetic") for i in range(300)]
    writer = SINKS["raw"].writer
    plain = BinaryRows(writer.binary.kinds, versioned=True, cluster=0)
    assert writer.binary(bars) == plain([astuple(b) for b in bars])
    assert writer.format(bars) == copy_text([astuple(b) for b in bars], plain=True, versioned=True)


def test_the_sinks_formats_follow_the_message_fields() -> None:
    assert SINKS["raw"].writer.binary.kinds == (
        "text", "timestamptz", "text", "float8", "float8", "float8", "float8", "int8", "text")
    assert SINKS["indicators"].writer.binary.kinds == ("text", "text", "timestamptz", "float8") + ("float8?",) * 12
    assert SINKS["alerts"].writer.binary is None and SINKS["forecasts"].writer.binary is None
