"""The shared Handler.decode: runs of one topic decoded in bulk give exactly what decoding
message by message gives (items in order, each invalid one with its reason)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from stockpipe.common.consume import Handler
from stockpipe.common.errors import InvalidMessage
from stockpipe.common.kafka import Message
from stockpipe.common.messages import Alert, Bar, Codec, alert_id

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


def Msg(topic: str, value: bytes | None, received_ms: int | None) -> Message:  # noqa: N802
    """A consumed message as confluent-kafka gives it (the code reads it through Message's own methods)."""
    return Message(topic=topic, partition=0, offset=0, value=value,
                   timestamp=(1, received_ms) if received_ms is not None else (0, -1))


def one_by_one(handler: Handler, messages: list[Msg]) -> tuple[list, list]:
    items, rejected = [], []
    for msg in messages:
        kind, ms = msg.timestamp()
        try:
            items.append((msg, handler.codecs[msg.topic()].decode(msg.value(), ms / 1000.0 if kind else None)))
        except InvalidMessage as exc:
            rejected.append((msg, exc.reason))
    return items, rejected


def test_bulk_decoding_is_message_by_message_decoding() -> None:
    bars, alerts = Codec(Bar), Codec(Alert)
    handler = Handler()
    handler.codecs = {"raw": bars, "alerts": alerts}
    rng = random.Random(5)

    def bar(i: int) -> bytes:
        c = 100.0 + i
        return bars.encode(Bar(symbol=f"S{i % 7}", interval="1m", ts=T0 + timedelta(minutes=i), open=c, high=c,
                               low=c, close=c, volume=i, source="synthetic"))

    def alert(i: int) -> bytes:
        ts = T0 + timedelta(minutes=i)
        return alerts.encode(Alert(id=alert_id("S", "1m", ts, "price_change"), symbol="S", interval="1m", ts=ts,
                                   rule="price_change", value=0.1, threshold=0.02, message="m"))

    reasons, bulk = set(), 0
    for _ in range(300):
        messages = []
        for i in range(rng.randint(0, 60)):
            topic = rng.choice(("raw", "raw", "raw", "alerts"))
            value = bar(i) if topic == "raw" else alert(i)
            kafka_ms = int((T0 + timedelta(minutes=i)).timestamp() * 1000)
            u = rng.random()
            if u < 0.03:
                value = None
            elif u < 0.06:
                value = value.replace(b'"close":', b'"close":-')  # invalid field
            elif u < 0.09:
                value = b'{"v":2' + value[6:]  # an unknown version
            elif u < 0.12:
                kafka_ms -= 10 * 3600 * 1000  # its ts lies hours ahead of its Kafka time: "future"
            elif u < 0.14:
                kafka_ms = None  # no Kafka timestamp
            messages.append(Msg(topic, value, kafka_ms))
        batch = handler.decode(messages)
        items, rejected = one_by_one(handler, messages)
        assert batch.items == items
        assert [(m, e.reason) for m, e in batch.rejected] == rejected
        reasons |= {reason for _, reason in rejected}
        bulk += not rejected and len(messages) > 10
    # Both paths ran: clean batches in bulk, and every kind of invalid message one by one.
    assert bulk > 10
    assert {"empty", "future", "invalid_field"} <= reasons, reasons
