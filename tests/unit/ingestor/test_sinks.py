"""Messages → COPY rows, without Kafka or PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from stockpipe.common.messages import Alert, Bar, Codec, Forecast, ForecastPoint, Indicators, alert_id
from stockpipe.ingestor.app import decode_batch
from stockpipe.ingestor.sinks import SINKS

TS = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


class Msg:
    def __init__(self, topic: str, value: bytes | None, offset: int = 0) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)  # TIMESTAMP_NOT_AVAILABLE


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
    assert [(r[2].minute, r[7]) for r in batch.rows["raw"]] == [(30, 10.5), (30, 10.7), (31, 10.6)]


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
