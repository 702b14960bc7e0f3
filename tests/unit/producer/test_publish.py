"""The producer's publishing loop against a Kafka that is not there (a real librdkafka
producer pointed at a closed port): nothing is acknowledged, so ``resume`` must not move,
the loop must keep beating, and a stop must end it in bounded time. The same loop with a
broker that goes away and comes back runs in tests/integration/test_producer_outage.py.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from stockpipe.common.kafka import Publisher
from stockpipe.common.messages import Bar
from stockpipe.common.settings import CommonSettings
from stockpipe.producer.app import RETRY_FOREVER, publish_bars
from stockpipe.producer.sources import FLUSH

T0 = datetime(2024, 5, 16, 13, 30, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


def settings() -> CommonSettings:
    return CommonSettings(kafka_bootstrap_servers=f"127.0.0.1:{closed_port()}")


def bar(minute: int) -> Bar:
    return Bar(symbol="AAPL", ts=T0 + timedelta(minutes=minute), interval="1m", open=1.0, high=1.0, low=1.0,
               close=1.0, volume=0, source="yfinance")


def test_resume_does_not_advance_without_acknowledgement_and_stop_ends_the_wait():
    publisher = Publisher(settings(), **RETRY_FOREVER)
    resume: dict = {}
    stop = threading.Event()
    beats: list[float] = []
    source_resumed = threading.Event()

    def source():
        yield bar(0)
        yield bar(1)
        yield FLUSH  # waits here: Kafka never acknowledges
        source_resumed.set()
        yield bar(2)

    threading.Timer(2.0, stop.set).start()
    t0 = time.monotonic()
    sent = publish_bars(source(), publisher, "raw", resume=resume, stop=stop,
                        on_beat=lambda: beats.append(time.monotonic()), remaining=lambda: 1.0)
    took = time.monotonic() - t0
    assert sent == 2 and resume == {}  # queued, never acknowledged: resume stays where it was
    assert not source_resumed.is_set()  # the source was not asked for more while Kafka was away
    assert len(beats) >= 2  # liveness kept beating while waiting
    assert 2.0 <= took < 2.0 + 1.0 + 1.5  # stop, then at most what is left of the shutdown budget
    assert publisher.pending() == 0  # what was not acknowledged was dropped (re-sent after restart)


def test_a_full_queue_waits_beating_and_gives_up_on_stop():
    stop = threading.Event()
    beats: list[float] = []
    publisher = Publisher(settings(), stop=stop, beat=lambda: beats.append(1.0),
                          **RETRY_FOREVER, **{"queue.buffering.max.messages": 2})
    assert publisher.publish("raw", b"1", "AAPL") and publisher.publish("raw", b"2", "AAPL")
    threading.Timer(1.5, stop.set).start()
    t0 = time.monotonic()
    assert publisher.publish("raw", b"3", "AAPL") is False  # no room, then stopped
    assert 1.5 <= time.monotonic() - t0 < 2.5 and len(beats) >= 1
    assert publisher.abandon(0.1) == 2


class RecordingDb:
    """Stands in for stockpipe.common.db.Database in this one test: records executemany calls."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def transaction(self):
        import contextlib

        db = self

        class Cursor:
            def executemany(self, sql, rows):
                db.rows.extend(rows)

        return contextlib.nullcontext(Cursor())


def test_company_profiles_are_fetched_beside_the_loop():
    from stockpipe.producer.companies import start_fill

    release = threading.Event()

    def slow_lookup(symbol):
        release.wait(5)
        return {"name": symbol.title(), "sector": None, "industry": None, "exchange": None, "currency": "USD"}

    db = RecordingDb()
    t0 = time.monotonic()
    thread = start_fill(db, ["AAPL", "MSFT"], "yfinance", slow_lookup)
    assert time.monotonic() - t0 < 0.1 and thread.daemon  # the caller goes on at once
    release.set()
    thread.join(5)
    assert [r["symbol"] for r in db.rows] == ["AAPL", "MSFT"]
