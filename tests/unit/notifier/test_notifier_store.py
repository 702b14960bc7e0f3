"""Remembered 410s: what the notifier does at start and on a 410, with a stand-in for the table."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

import pytest

from stockpipe.common.errors import TransientError
from stockpipe.notifier.endpoints import parse_endpoints
from stockpipe.notifier.store import Disabled, GoneRecorder, prepare

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EPS = parse_endpoints(json.dumps([{"url": f"https://h{i}.example/hook?token=T{i}", "secret": SECRET}
                                  for i in range(1, 4)]))


class FakeTable:
    """The rows of notifier_disabled_endpoints; ``outage`` calls fail as PostgreSQL being away would."""

    def __init__(self, outage: int = 0) -> None:
        self.rows: dict[str, Disabled] = {}
        self.outage = outage
        self.written = threading.Event()

    def _maybe_down(self) -> None:
        if self.outage:
            self.outage -= 1
            raise TransientError("PostgreSQL unreachable: connection refused")

    def load(self, ids):
        self._maybe_down()
        return {i: r for i, r in self.rows.items() if i in ids}

    def enable(self, ids):
        self._maybe_down()
        return [self.rows.pop(i) for i in list(ids) if i in self.rows]

    def disable(self, endpoint_id, endpoint, reason):
        self._maybe_down()
        self.rows.setdefault(endpoint_id, Disabled(endpoint_id, endpoint, datetime(2026, 12, 1, tzinfo=UTC), reason))
        self.written.set()


def test_prepare_reports_the_disabled_endpoints_and_forgets_the_reenabled_ones(caplog) -> None:
    table = FakeTable()
    for ep in EPS[:2]:
        table.disable(ep.id, ep.name, "410 Gone")
    with caplog.at_level(logging.INFO, logger="stockpipe.notifier"):
        disabled = prepare(table, EPS, reenable=[EPS[1]])
    assert disabled == {EPS[0].id: "410 Gone on 2026-12-01T00:00:00+00:00"}
    assert set(table.rows) == {EPS[0].id}
    text = caplog.text
    assert "endpoint #1 https://h1.example is disabled: it answered 410 Gone on 2026-12-01" in text
    assert f"endpoint_id '{EPS[0].id}'" in text and "NOTIFY_REENABLE=1" in text
    assert "endpoint #2 https://h2.example: enabled again by NOTIFY_REENABLE" in text
    assert "token" not in text and "T1" not in text


def test_a_410_is_written_through_a_postgresql_outage() -> None:
    table = FakeTable(outage=3)
    recorder = GoneRecorder(table, initial=0.01, cap=0.02)
    recorder.record(EPS[2])
    assert table.written.wait(10)
    recorder.close()
    assert table.rows[EPS[2].id].endpoint == "https://h3.example"


def test_a_410_not_written_by_shutdown_is_given_up_with_a_line_saying_what_follows(caplog) -> None:
    table = FakeTable(outage=10**6)
    recorder = GoneRecorder(table, initial=5.0, cap=5.0)
    with caplog.at_level(logging.ERROR, logger="stockpipe.notifier"):
        recorder.record(EPS[0])
        recorder.close(timeout=5)  # one more attempt, then it gives up: no wait for the backoff
    assert not table.rows
    assert "its 410 could not be remembered" in caplog.text and "gets one alert more" in caplog.text


@pytest.mark.parametrize("reenable", [[], list(EPS)])
def test_prepare_waits_for_the_caller_to_retry_during_an_outage(reenable) -> None:
    with pytest.raises(TransientError):
        prepare(FakeTable(outage=1), EPS, reenable)
