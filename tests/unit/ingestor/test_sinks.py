"""Messages → COPY rows, without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stockpipe.common.kafka import Message
from stockpipe.common.messages import Alert, Bar, Codec, Forecast, ForecastPoint, Indicators, alert_id
from stockpipe.ingestor.app import decode_batch
from stockpipe.ingestor.sinks import SINKS

TS = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def Msg(topic: str, value: bytes | None, offset: int = 0, received: datetime | None = None) -> Message:  # noqa: N802
    """A consumed message as confluent-kafka gives it (the code reads it through Message's own methods)."""
    # timestamp: (TIMESTAMP_CREATE_TIME, ms), or (TIMESTAMP_NOT_AVAILABLE, -1)
    return Message(topic=topic, partition=0, offset=offset, value=value,
                   timestamp=(1, int(received.timestamp() * 1000)) if received else (0, -1))


def bar(close: float = 10.5, ts: datetime = TS) -> bytes:
    return Codec(Bar).encode(Bar(symbol="AAPL", ts=ts, interval="1m", open=10.0, high=11.0, low=9.0,
                                 close=close, volume=100, source="synthetic"))


SINKS_BY_TOPIC = {kind: SINKS[kind] for kind in SINKS}


def fmt(kind: str, batch) -> bytes:
    return SINKS[kind].writer.format(batch.rows[kind])


def test_bar_row_is_copy_text_in_column_order() -> None:
    batch = decode_batch([Msg("raw", bar())], SINKS_BY_TOPIC)
    assert fmt("raw", batch) == b"AAPL\t2024-01-02T14:30:00Z\t1m\t10.0\t11.0\t9.0\t10.5\t100\tsynthetic\n"
    assert SINKS["raw"].writer.columns == ("symbol", "ts", "interval", "open", "high", "low", "close", "volume", "source")


def test_duplicate_keys_in_a_batch_are_all_kept_as_rows() -> None:
    # Bars are final (DESIGN.md): the first row of a key wins. The sink keeps every row in
    # arrival order; the table writer's merge keeps the first (tests/integration/test_table_writer.py).
    batch = decode_batch([Msg("raw", bar(10.5)), Msg("raw", bar(10.7)), Msg("raw", bar(10.6, TS.replace(minute=31)))],
                         SINKS_BY_TOPIC)
    assert len(batch.rows["raw"]) == 3 and len(batch.messages) == 3
    assert [(r.ts.minute, r.close) for r in batch.rows["raw"]] == [(30, 10.5), (30, 10.7), (31, 10.6)]


def test_invalid_messages_are_rejected_not_raised() -> None:
    batch = decode_batch([Msg("raw", b"{oops", 1), Msg("raw", bar(), 2), Msg("raw", None, 3)], SINKS_BY_TOPIC)
    assert [(m.offset(), e.reason) for m, e in batch.rejected] == [(1, "malformed"), (3, "empty")]
    assert batch.row_count() == 1


def test_indicator_alert_and_forecast_rows() -> None:
    ind = Codec(Indicators).encode(Indicators(symbol="AAPL", interval="1m", ts=TS, close=1.5, rsi=55.0))
    aid = alert_id("AAPL", "1m", TS, "rsi_overbought")
    alert = Codec(Alert).encode(Alert(id=aid, symbol="AAPL", interval="1m", ts=TS, rule="rsi_overbought",
                                      value=71.0, threshold=70.0, message="back\\slash"))
    fc = Codec(Forecast).encode(Forecast(symbol="AAPL", interval="1m", made_at=TS, model="arima(1,1,1)", points=[
        ForecastPoint(ts=TS.replace(minute=31), yhat=1.0, lo=None, hi=2.0),
        ForecastPoint(ts=TS.replace(minute=32), yhat=1.1, lo=0.5, hi=2.1)]))
    batch = decode_batch([Msg("indicators", ind), Msg("alerts", alert), Msg("forecasts", fc)], SINKS_BY_TOPIC)
    ind_row = fmt("indicators", batch).decode().rstrip("\n").split("\t")
    columns = SINKS["indicators"].writer.columns
    assert dict(zip(columns, ind_row))["rsi"] == "55.0" and dict(zip(columns, ind_row))["sma_short"] == "\\N"
    assert len(ind_row) == len(columns) and columns[:4] == ("symbol", "interval", "ts", "close")
    alert_row = fmt("alerts", batch).decode()
    assert alert_row.startswith(aid) and "back\\\\slash" in alert_row
    fc_rows = fmt("forecasts", batch).decode().splitlines()
    assert [r.split("\t")[3:] for r in fc_rows] == [
        ["arima(1,1,1)", "2024-01-02T14:31:00+00:00", "1.0", "\\N", "2.0"],
        ["arima(1,1,1)", "2024-01-02T14:32:00+00:00", "1.1", "0.5", "2.1"]]


def one_by_one(msgs: list[Msg]) -> tuple[dict[str, list[tuple]], list[tuple[int, str]]]:
    """Rows per kind and (offset, reason) of rejects as decoding each message alone gives them."""
    rows: dict[str, list[tuple]] = {}
    rejected = []
    for m in msgs:
        b = decode_batch([m], SINKS_BY_TOPIC)
        for kind, kind_rows in b.rows.items():
            rows.setdefault(kind, []).extend(kind_rows)
        rejected += [(x.offset(), e.reason) for x, e in b.rejected]
    return rows, rejected


def test_a_batch_decodes_as_its_messages_one_by_one() -> None:
    # decode_batch takes a run of one topic in one pass when every message is valid, and
    # message by message otherwise: the rows and reasons are the same either way.
    received = TS + timedelta(minutes=5)
    good = [Msg("raw", bar(9.5 + i / 16, TS.replace(minute=i)), i, received) for i in range(20)]
    ind = Codec(Indicators).encode(Indicators(symbol="AAPL", interval="1m", ts=TS, close=1.5))
    bad = [
        Msg("raw", None, 100, received),
        Msg("raw", b"{oops", 101, received),
        Msg("raw", bar(ts=TS + timedelta(minutes=8)), 102, received),  # 3 min ahead of its Kafka time
        Msg("raw", b'{"symbol":"AAPL","v":1' + bar()[len(b'{"v":1,"symbol":"AAPL"'):], 103, received),  # v later: valid
        Msg("raw", bar(), 104),  # no Kafka time: no check against it
        Msg("indicators", ind, 105, received),
    ]
    for batch_msgs in (good, good[:10] + bad + good[10:], bad + good, good + bad[2:3], good + bad[3:4]):
        batch = decode_batch(batch_msgs, SINKS_BY_TOPIC)
        rows, rejected = one_by_one(batch_msgs)
        assert {kind: kind_rows for kind, kind_rows in batch.rows.items() if kind_rows} == rows
        assert [(m.offset(), e.reason) for m, e in batch.rejected] == rejected
    assert one_by_one(bad)[1] == [(100, "empty"), (101, "malformed"), (102, "future")]


def test_the_batch_path_is_taken_for_valid_runs() -> None:
    received = TS + timedelta(minutes=5)
    values = [bar(10.0, TS + timedelta(minutes=i)) for i in range(3)]
    decoder = SINKS["raw"].codec.decoder
    assert decoder.decode_all(values, received.timestamp()) == [decoder.decode(v) for v in values]
    assert decoder.decode_all([], None) == []
    assert decoder.decode_all(values, (TS - timedelta(minutes=1)).timestamp()) is None  # 14:32 might be "future"
    assert decoder.decode_all(values + [None], None) is None
    assert decoder.decode_all(values + [b"{oops"], None) is None
    assert decoder.decode_all([bar()[:1] + b" " + bar()[1:]], None) is None  # valid, but decode() checks its v
