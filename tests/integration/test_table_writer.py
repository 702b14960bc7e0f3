"""TableWriter on a real PostgreSQL: the direct COPY, the conflict path, and "the first row of a key wins"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stockpipe.common.db import CopyConflict, Database, TableWriter, write_tables
from stockpipe.common.settings import CommonSettings, Secret

from harness import Stack

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
COLUMNS = ("symbol", "ts", "interval", "open", "high", "low", "close", "volume", "source")


def row(minute: int, close: float, symbol: str = "AAPL") -> tuple:
    return (1, symbol, T0 + timedelta(minutes=minute), "1m", close, close, close, close, 100, "synthetic")


def database(stack: Stack) -> Database:
    return Database(CommonSettings(postgres_dsn=Secret(stack.dsn), service_name="test"))


def write(stack: Stack, writer: TableWriter, rows: list[tuple], preformatted: bool) -> None:
    db = database(stack)
    try:
        write_tables(db, [(writer, rows, writer.format(rows) if preformatted else None)])
    finally:
        db.close()


def stored(stack: Stack) -> dict[tuple[str, int], float]:
    return {(s, int((ts - T0).total_seconds() // 60)): c
            for s, ts, c in stack.query("SELECT symbol, ts, close FROM price_bars")}


@pytest.mark.parametrize("preformatted", [True, False])
def test_new_rows_conflicts_and_repeats_within_a_batch_keep_the_first_row(stack: Stack, preformatted: bool) -> None:
    writer = TableWriter("price_bars", COLUMNS, ("symbol", "interval", "ts"), plain=True, versioned=True)
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


def test_a_long_replay_in_many_batches_changes_nothing(stack: Stack) -> None:
    writer = TableWriter("price_bars", COLUMNS, ("symbol", "interval", "ts"), plain=True, versioned=True)
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
