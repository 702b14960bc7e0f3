"""TableWriter on a real PostgreSQL: the direct COPY, the conflict path, and "the first row of a key wins"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from stockpipe.common.db import TableWriter

from harness import Stack

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
COLUMNS = ("symbol", "ts", "interval", "open", "high", "low", "close", "volume", "source")


def row(minute: int, close: float, symbol: str = "AAPL") -> tuple:
    return (1, symbol, T0 + timedelta(minutes=minute), "1m", close, close, close, close, 100, "synthetic")


def write(stack: Stack, writer: TableWriter, rows: list[tuple], preformatted: bool) -> None:
    conn = psycopg2.connect(stack.dsn)
    try:
        with conn, conn.cursor() as cur:
            writer.write(cur, rows, writer.format(rows) if preformatted else None)
    finally:
        conn.close()


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
