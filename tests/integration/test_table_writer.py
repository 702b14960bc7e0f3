"""TableWriter on a real PostgreSQL: the direct COPY, the conflict path, "the first row of a key
wins", in text and in binary COPY; and binary COPY stores exactly what text COPY stores."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

import pytest

from stockpipe.common.db import CopyConflict, Database, TableWriter, write_tables
from stockpipe.common.messages import MAX_VOLUME, PRICE_RANGE
from stockpipe.common.settings import CommonSettings, Secret
from stockpipe.ingestor.binary import BinaryRows
from stockpipe.ingestor.sinks import SINKS

from harness import Stack

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
COLUMNS = ("symbol", "ts", "interval", "open", "high", "low", "close", "volume", "source")


def row(minute: int, close: float, symbol: str = "AAPL") -> tuple:
    return (1, symbol, T0 + timedelta(minutes=minute), "1m", close, close, close, close, 100, "synthetic")


def database(stack: Stack) -> Database:
    return Database(CommonSettings(postgres_dsn=Secret(stack.dsn), service_name="test"))


def tuple_binary(kind: str) -> BinaryRows:
    """The sink's binary format for rows as tuples (the ingestor hands it messages: the same
    bytes, tests/unit/ingestor/test_binary.py)."""
    return BinaryRows(SINKS[kind].writer.binary.kinds, versioned=True, cluster=SINKS[kind].writer.binary.cluster)


def bars_writer(binary: bool = False) -> TableWriter:
    return TableWriter("price_bars", COLUMNS, ("symbol", "interval", "ts"), plain=True, versioned=True,
                       binary=tuple_binary("raw") if binary else None)


def write(stack: Stack, writer: TableWriter, rows: list[tuple], preformatted: bool) -> None:
    db = database(stack)
    try:
        write_tables(db, [(writer, rows, writer.prepare(rows) if preformatted else None)])
    finally:
        db.close()


def stored(stack: Stack) -> dict[tuple[str, int], float]:
    return {(s, int((ts - T0).total_seconds() // 60)): c
            for s, ts, c in stack.query("SELECT symbol, ts, close FROM price_bars")}


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("preformatted", [True, False])
def test_new_rows_conflicts_and_repeats_within_a_batch_keep_the_first_row(stack: Stack, preformatted: bool,
                                                                         binary: bool) -> None:
    writer = bars_writer(binary)
    assert writer.prepare([row(0, 1.0)]).binary is binary
    write(stack, writer, [row(m, 100.0 + m) for m in range(50)], preformatted)  # direct COPY
    assert writer._upsert_batches_left == 0 and len(stored(stack)) == 50

    # A key twice in one batch on an empty key range: the direct COPY fails, the merge keeps the first.
    write(stack, writer, [row(60, 1.0), row(61, 2.0), row(60, 3.0), row(61, 4.0), row(62, 5.0)], preformatted)
    assert writer._upsert_batches_left > 0  # now on the upsert path
    # A replay of stored rows with other values, mixed with new rows and repeats among them.
    write(stack, writer, [row(m, -1.0) for m in range(0, 70, 3)] + [row(70, 7.0), row(70, 8.0)], preformatted)

    got = stored(stack)
    new_in_replay = [m for m in range(0, 70, 3) if m >= 50 and m not in (60, 61, 62)]
    assert len(got) == 50 + 3 + 1 + len(new_in_replay)
    assert all(got[("AAPL", m)] == 100.0 + m for m in range(50))
    assert all(got[("AAPL", m)] == -1.0 for m in new_in_replay)
    assert (got[("AAPL", 60)], got[("AAPL", 61)], got[("AAPL", 62)], got[("AAPL", 70)]) == (1.0, 2.0, 5.0, 7.0)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_repeats_of_many_symbols_in_a_batch_keep_the_first_row(stack: Stack, binary: bool) -> None:
    # Binary COPY sends a batch grouped by symbol (each symbol's rows in arrival order): of
    # two rows with one key, the first is still the one stored.
    writer = bars_writer(binary)
    symbols = ["MSFT", "AAPL", "IBM", "A"]
    first = [row(m, 100.0 + m, s) for m in range(10) for s in symbols]
    again = [row(m, -1.0 - m, s) for m in range(5, 12) for s in reversed(symbols)]
    write(stack, writer, first + again, True)  # the direct COPY fails on the repeats; the merge keeps the first
    got = stored(stack)
    assert len(got) == 12 * len(symbols)
    assert all(got[(s, m)] == (100.0 + m if m < 10 else -1.0 - m) for m in range(12) for s in symbols)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_long_replay_in_many_batches_changes_nothing(stack: Stack, binary: bool) -> None:
    writer = bars_writer(binary)
    rows = [row(m, 10.0 + m, f"S{k}") for m in range(200) for k in range(5)]
    write(stack, writer, rows, True)
    for start in range(0, len(rows), 100):  # every batch conflicts; other closes are ignored
        write(stack, writer, [r[:7] + (-1.0,) + r[8:] for r in rows[start:start + 100]], True)
    got = stored(stack)
    assert len(got) == 1000 and all(got[(f"S{k}", m)] == 10.0 + m for m in range(200) for k in range(5))


def test_a_conflict_writes_the_whole_transaction_again(stack: Stack) -> None:
    # No savepoint: a direct COPY that meets a stored key aborts the transaction, and every
    # table's rows of the batch are written again in a new one, each exactly once.
    bars = TableWriter("price_bars", COLUMNS, ("symbol", "interval", "ts"), plain=True, versioned=True)
    indicators = TableWriter("indicators", ("symbol", "interval", "ts", "close"), ("symbol", "interval", "ts"))
    write(stack, bars, [row(0, 1.0)], True)
    db = database(stack)
    try:
        with pytest.raises(CopyConflict), db.transaction() as cur:
            TableWriter("price_bars", COLUMNS, ("symbol", "interval", "ts"), plain=True, versioned=True).write(
                cur, [row(0, 2.0)])
        ind_rows = [("AAPL", "1m", T0 + timedelta(minutes=m), 5.0) for m in range(3)]
        write_tables(db, [(indicators, ind_rows, None), (bars, [row(0, 3.0), row(1, 4.0)], None)])
    finally:
        db.close()
    assert stack.scalar("SELECT count(*) FROM indicators") == 3
    assert stored(stack) == {("AAPL", 0): 1.0, ("AAPL", 1): 4.0}


def bits(x: float | None) -> str | None:
    return None if x is None else struct.pack("!d", x).hex()  # tells -0.0, NaN and every last bit apart


def test_binary_copy_stores_exactly_what_text_copy_stores(stack: Stack) -> None:
    """Every kind of value at its extremes, through both formats into two tables: the same bits."""
    lo, hi = PRICE_RANGE
    prices = [lo, hi, 1.0, 0.1, 1 / 3, 123456.789, math.nextafter(lo, 1), math.nextafter(hi, 0)]
    times = [datetime(1900, 5, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
             datetime(2000, 1, 1, tzinfo=UTC), T0, datetime.now(UTC).replace(second=0, microsecond=0)]
    symbols = ["A", "BRK.B", "^GSPC", "EURUSD=X", "BTC-USD", "X" * 15]
    bars = [(1, sym, ts, "1m" if k % 2 else "15m", p, p, p, p, vol, src)
            for k, (sym, ts, p, vol, src) in enumerate(
                (symbols[i % len(symbols)], times[i % len(times)], prices[i % len(prices)],
                 (0, 1, MAX_VOLUME, 2**53 + 1)[i % 4], ("yfinance", "synthetic", "replay")[i % 3]) for i in range(48))]
    bars = list({(r[1], r[2], r[3]): r for r in bars}.values())  # one row per key
    specials = [None, 0.0, -0.0, -1e308, 1e308, float("nan"), float("inf"), -float("inf"), 5e-324, 2.5]
    indicators = [(1, sym, "1m", T0 + timedelta(minutes=i), 1.5) + tuple(specials[(i + j) % len(specials)] for j in range(12))
                  for i, sym in enumerate(symbols * 4)]
    got = {}
    for binary in (False, True):
        for kind, table, rows in (("raw", "price_bars", bars), ("indicators", "indicators", indicators)):
            sink = SINKS[kind].writer
            writer = TableWriter(table, sink.columns, sink.key, plain=True, versioned=True,
                                 binary=tuple_binary(kind) if binary else None)
            assert writer.prepare(rows).binary is binary
            stack.execute(f"TRUNCATE {table}")
            write(stack, writer, rows, True)
            got[(kind, binary)] = sorted(
                tuple(bits(v) if isinstance(v, float) or v is None else v for v in r)
                for r in stack.query(f"SELECT * FROM {table}"))
            assert len(got[(kind, binary)]) == len(rows)
    assert got[("raw", True)] == got[("raw", False)]
    assert got[("indicators", True)] == got[("indicators", False)]


def test_rows_binary_cannot_hold_go_as_text(stack: Stack) -> None:
    writer = bars_writer(binary=True)
    for rows in ([row(0, 1.0), (1, "AAPL", datetime(1900, 1, 1, tzinfo=UTC), "1m", 1.0, 1.0, 1.0, 1.0, 1, "synthetic")],
                 [row(0, 1.0), (1, "ÄPL", T0, "1m", 1.0, 1.0, 1.0, 1.0, 1, "synthetic")],
                 [row(0, 1.0, "B"), row(1, 1.0, "B")[:8] + (2**63,) + ("synthetic",)]):
        copy = writer.prepare(rows)
        assert not copy.binary and copy.data == writer.format(rows)
    write(stack, writer, [row(0, 1.0), (1, "AAPL", datetime(1900, 1, 1, tzinfo=UTC), "1m", 2.0, 2.0, 2.0, 2.0, 1, "synthetic")],
          True)
    assert stack.scalar("SELECT count(*) FROM price_bars") == 2
