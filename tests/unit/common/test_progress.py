"""Progress lines: counts and rates per interval, silence when idle or disabled."""

from __future__ import annotations

import logging

import pytest

from stockpipe.common import progress as progress_module
from stockpipe.common.progress import Progress


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    return now


def test_logs_counts_and_rates_once_per_interval(clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "stockpipe.progress")
    p = Progress("stored", every=10)
    p.add(rows=1000, rejected=2)
    clock[0] += 5
    p.tick()
    assert caplog.messages == []  # not yet
    clock[0] += 5
    p.add(rows=500)
    p.tick()
    assert caplog.messages == ["stored 1,500 rows (150/s), 2 rejected (0/s) in the last 10s"]
    clock[0] += 10
    p.tick()  # nothing happened: nothing logged
    assert len(caplog.messages) == 1


def test_disabled_with_zero(clock: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "stockpipe.progress")
    p = Progress("stored", every=0)
    p.add(rows=5)
    clock[0] += 1000
    p.tick()
    assert caplog.messages == []
