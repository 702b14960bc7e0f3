"""The analytics loop's safety rules that need no broker to check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stockpipe.analytics.app import AnalyticsHandler, StateRebuildFailed
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.consume import REBUILD_ATTEMPTS
from stockpipe.common.errors import TransientError
from stockpipe.common.http import Health
from stockpipe.common.kafka import Publisher
from stockpipe.common.lifecycle import Shutdown
from stockpipe.common.messages import Bar
from stockpipe.common.progress import Progress


class FakeConsumer:
    """Only ``committed``, which the rebuild asks the group for."""

    def __init__(self, committed) -> None:
        self.committed = committed


def make_app() -> AnalyticsHandler:
    # Port 9 on loopback: nothing listens; librdkafka only connects when used.
    settings = AnalyticsSettings(kafka_bootstrap_servers="127.0.0.1:9")
    return AnalyticsHandler(settings, Publisher(settings), Health(), Shutdown(), Progress("x", 0))


def test_a_rebuild_that_keeps_failing_stops_the_process_instead_of_consuming_without_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    ts = datetime(2024, 1, 2, tzinfo=UTC)
    app.processor.process(Bar(symbol="AAPL", ts=ts, interval="1m", open=1.0, high=1.0, low=1.0, close=1.0,
                              volume=1, source="replay"), partition=3)
    calls = []

    def committed(partitions, timeout):
        calls.append(partitions)
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    monkeypatch.setattr(app.shutdown, "wait", lambda s: False)
    with pytest.raises(StateRebuildFailed, match="partitions 3"):
        app.on_assign([TopicPartition("raw", 3)], FakeConsumer(committed))
    assert len(calls) == REBUILD_ATTEMPTS
    assert not isinstance(StateRebuildFailed("x"), KafkaException)  # the loop must not retry past it
    assert app.processor.series == {}  # nothing half-built is kept


def test_a_rebuild_that_recovers_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    attempts = iter([KafkaException(KafkaError(KafkaError._TIMED_OUT)), None])

    def committed(partitions, timeout):
        with pytest.raises(TransientError, match="rebuilding"):
            app.check_ready()  # not ready while the state is being rebuilt
        failure = next(attempts)
        if failure:
            raise failure
        return [TopicPartition("raw", 0, -1001)]  # nothing committed yet: nothing to replay

    monkeypatch.setattr(app.shutdown, "wait", lambda s: False)
    app.on_assign([TopicPartition("raw", 0)], FakeConsumer(committed))
    app.check_ready()  # ready again


def test_the_fast_indicators_message_encodes_to_the_same_bytes() -> None:
    # The handler builds _IndicatorsOut positionally (no re-validation) and encodes a batch with
    # encode_lines: each line must be the exact bytes Codec(Indicators) gives, and decode back.
    from datetime import UTC, datetime

    import msgspec

    from stockpipe.analytics.app import _IndicatorsOut
    from stockpipe.common.messages import INDICATOR_FIELDS, Codec, Indicators

    codec = Codec(Indicators)
    ts = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    rows = [
        [None] * 12,
        [55.5, 1.0, 2.0, 3.0, 4.0, 5.0, 4.5, 4.0, -0.1, 0.2, -0.30000000000000004, 0.0],
        [100.0, 1e-8, 1e9, 5e-324, 1.7976931348623157e308, None, None, None, -0.0, 0.0, 1e-300, 2.5],
    ]
    outs = [_IndicatorsOut(1, "BRK.B", "1m", ts, 123.456, *row) for row in rows]
    lines = msgspec.json.Encoder().encode_lines(outs).split(b"\n")[:-1]
    for row, line in zip(rows, lines):
        message = Indicators(symbol="BRK.B", interval="1m", ts=ts, close=123.456, **dict(zip(INDICATOR_FIELDS, row)))
        assert line == codec.encode(message)
        assert codec.decode(line) == message
