"""Where raw left off: the resume scan's rounds, and a series that never mixes sources.

The scan runs on an in-memory topic behind the same ``read(ranges, on_message)`` shape as
:func:`stockpipe.common.reader.read_partitions` (offsets, ``tail(n)``, ``BEGINNING``,
``END``, truncation by retention); the real reader on a real Kafka runs in
tests/integration/test_producer_outage.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from stockpipe.common.messages import Bar, Codec
from stockpipe.common.reader import BEGINNING, END, ReadStats
from stockpipe.producer.app import _own_series, _refuse_foreign, fallback_symbols
from stockpipe.producer.resume import foreign_series, scan_last_bars
from stockpipe.producer.sources import FLUSH
from stockpipe.producer.sources.synthetic import SyntheticSource

CODEC = Codec(Bar)
T0 = datetime(2024, 5, 16, 13, 30, tzinfo=UTC)


def bar(symbol: str, minute: int, source: str = "yfinance", interval: str = "1m", close: float = 10.0) -> Bar:
    return Bar(symbol=symbol, ts=T0 + timedelta(minutes=minute), interval=interval, open=close, high=close,
               low=close, close=close, volume=0, source=source)


class Msg:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._p, self._o, self._v = partition, offset, value

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v


class Topic:
    """Partitions of messages in memory; ``low`` offsets model retention."""

    def __init__(self, partitions: int = 3) -> None:
        self.logs: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.low: dict[int, int] = dict.fromkeys(self.logs, 0)
        self.reads: list[dict[int, tuple[int, int]]] = []
        self.messages_read = 0

    def append(self, partition: int, *values: Bar | bytes) -> None:
        self.logs[partition].extend(v if isinstance(v, bytes) else CODEC.encode(v) for v in values)

    def read(self, ranges, on_message) -> ReadStats:
        """As read_partitions resolves ranges (see stockpipe.common.reader)."""
        self.reads.append(dict(ranges))
        stats = ReadStats()
        for p, (start, end) in ranges.items():
            low, high = self.low[p], len(self.logs[p])
            if start == BEGINNING:
                first = low
                if low > 0:
                    stats.truncated[p] = (0, low)
            elif start <= -1000:
                first = max(low, high - (-1000 - start))
            else:
                first = start
                if start < low:
                    stats.truncated[p] = (start, low)
                    first = low
            last = high if end == END else min(end, high)
            stats.ranges[p] = (first, max(first, last))
            for off in range(first, last):
                on_message(Msg(p, off, self.logs[p][off]))
                stats.messages += 1
                self.messages_read += 1
        return stats


def test_the_first_round_finds_what_is_near_the_tail():
    topic = Topic()
    topic.append(0, bar("AAPL", 0), bar("AAPL", 1))
    topic.append(1, bar("MSFT", 0), b"not a bar", bar("MSFT", 2))
    last = scan_last_bars(topic.read, [0, 1, 2], scan=10, wanted={("AAPL", "1m"), ("MSFT", "1m")})
    assert {k: b.ts.minute - 30 for k, b in last.items()} == {("AAPL", "1m"): 1, ("MSFT", "1m"): 2}
    assert len(topic.reads) == 1


def test_a_series_pushed_out_of_the_scan_by_a_long_backfill_is_still_found():
    topic = Topic(partitions=2)
    topic.append(0, *(bar("AAPL", m) for m in range(5)))  # the live series' last bar: 13:34
    daily = [Bar(symbol="IBM", ts=datetime(1990, 1, 1, tzinfo=UTC) + timedelta(days=d), interval="1d", open=1.0,
                 high=1.0, low=1.0, close=1.0, volume=0, source="yfinance") for d in range(10_000)]
    topic.append(0, *daily)  # then a long backfill
    topic.append(1, *(bar("MSFT", m) for m in range(50)))
    last = scan_last_bars(topic.read, [0, 1], scan=100, wanted={("AAPL", "1m"), ("MSFT", "1m")})
    assert last[("AAPL", "1m")].ts == T0 + timedelta(minutes=4)
    assert last[("MSFT", "1m")].ts == T0 + timedelta(minutes=49)
    # Rounds of 100, 400, 1600, 6400, then the rest down to offset 0 of partition 0 only
    # (partition 1 was read from its start in the first round).
    assert [sorted(r) for r in topic.reads] == [[0, 1], [0], [0], [0], [0]]
    assert topic.reads[-1] == {0: (BEGINNING, 10_005 - 100 - 400 - 1600 - 6400)}


def test_a_series_never_sent_reads_every_partition_back_to_its_start_then_starts_fresh(caplog):
    topic = Topic(partitions=2)
    topic.append(0, *(bar("AAPL", m) for m in range(300)))
    topic.append(1, *(bar("MSFT", m) for m in range(30)))
    topic.low[0] = 120  # retention dropped the oldest
    with caplog.at_level(logging.INFO):
        last = scan_last_bars(topic.read, [0, 1], scan=50, wanted={("AAPL", "1m"), ("NEW", "1m")})
    assert ("NEW", "1m") not in last and last[("AAPL", "1m")].ts == T0 + timedelta(minutes=299)
    assert topic.messages_read == (300 - 120) + 30  # every retained message once, no more
    assert "start fresh" in caplog.text


def test_without_wanted_series_or_with_scan_0():
    topic = Topic(partitions=1)
    topic.append(0, *(bar("AAPL", m) for m in range(100)))
    assert scan_last_bars(topic.read, [0], scan=10) == {("AAPL", "1m"): bar("AAPL", 99)}
    assert len(topic.reads) == 1
    assert scan_last_bars(topic.read, [0], scan=0, wanted={("X", "1m")}) == {}


# --------------------------------------------------------------------------- sources never mix


def raw_tail(source: str) -> dict:
    return {("AAPL", "1m"): bar("AAPL", 5, source=source), ("AAPL.SYN", "1m"): bar("AAPL.SYN", 7, "synthetic"),
            ("MSFT", "1m"): bar("MSFT", 5, source="yfinance")}


def test_foreign_series_are_named_with_their_source():
    assert foreign_series(raw_tail("yfinance"), "synthetic") == {("AAPL", "1m"): "yfinance",
                                                                 ("MSFT", "1m"): "yfinance"}
    assert foreign_series(raw_tail("synthetic"), "yfinance") == {("AAPL", "1m"): "synthetic",
                                                                 ("AAPL.SYN", "1m"): "synthetic"}


def test_synthetic_never_continues_a_real_series(caplog):
    """A raw tail with real AAPL bars while the producer runs synthetic AAPL: AAPL is left alone."""
    last = raw_tail("yfinance")
    refused = _refuse_foreign(last, "synthetic")
    assert set(refused) == {("AAPL", "1m"), ("MSFT", "1m")} and set(last) == {("AAPL.SYN", "1m")}
    assert "not publishing AAPL 1m: its last bar on raw came from yfinance" in caplog.text
    source = SyntheticSource(["AAPL", "AAPL.SYN", "MSFT"], rate=0, start=T0, clock=lambda: T0 + timedelta(days=9))
    import threading
    from itertools import islice

    bars = list(islice(_own_series(source.bars(last, threading.Event()), refused), 20))
    assert {b.symbol for b in bars} == {"AAPL.SYN"}  # only the synthetic series, continued after 13:37
    assert bars[0].ts == T0 + timedelta(minutes=8) and bars[0].open == 10.0


def test_real_bars_never_continue_a_synthetic_series():
    """A raw tail whose AAPL is synthetic (someone ran PRODUCER_SOURCE=synthetic with
    TICKERS=AAPL) while the producer runs yfinance: AAPL is refused; MSFT continues."""
    last = raw_tail("synthetic")
    refused = _refuse_foreign(last, "yfinance")
    assert set(refused) == {("AAPL", "1m"), ("AAPL.SYN", "1m")} and set(last) == {("MSFT", "1m")}
    stream = [bar("AAPL", 6), bar("MSFT", 6), FLUSH]
    assert list(_own_series(stream, refused)) == [bar("MSFT", 6), FLUSH]


def test_the_auto_fallback_publishes_under_its_own_symbols():
    assert fallback_symbols(["AAPL", "BTC-USD", "EURUSD=X", "BRK.B"]) == [
        "AAPL.SYN", "BTC-USD.SYN", "EURUSD=X.SYN", "BRK.B.SYN"]
    from stockpipe.common.errors import SettingsError

    with pytest.raises(SettingsError, match="TICKERS"):
        fallback_symbols(["ABCDEFGHIJKL"])  # 12 + 4 > 15 characters
