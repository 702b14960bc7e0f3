"""Where each series left off, read back from a real ``raw`` through the shared reader.

- A long backfill-like flood after a series' last bar (30,000 other bars in the same
  partition, far more than ``RESUME_SCAN``) does not make the producer start that series
  over: it continues after its last bar, no gap, no duplicate.
- A series never mixes sources: a synthetic producer facing real (``yfinance``) AAPL bars
  on ``raw`` publishes no AAPL, and its other series as usual.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stockpipe.common.messages import Bar, Codec

from harness import Stack

pytestmark = pytest.mark.integration

BARS = Codec(Bar)
START = "2024-01-02T00:00:00Z"


def synthetic(n: int, **extra: object) -> dict[str, object]:
    return {"PRODUCER_SOURCE": "synthetic", "SYNTHETIC_RATE": "0", "SYNTHETIC_START": START,
            "MAX_MESSAGES": str(n), "COMPANIES": "false", **extra}


def series(stack: Stack, symbol: str, interval: str = "1m") -> list[Bar]:
    bars = [BARS.decode(m.value()) for m in stack.consume_all("raw", timeout=60)]
    return [b for b in bars if b.symbol == symbol and b.interval == interval]


def test_resume_finds_a_series_pushed_out_of_the_scan(stack: Stack) -> None:
    stack.run_module("stockpipe.producer", **synthetic(300, TICKERS="BTC-USD"))
    # A long backfill of another interval under the same key (so the same partition).
    flood = (BARS.encode(Bar(symbol="BTC-USD", ts=datetime(2000, 1, 1, tzinfo=UTC) + timedelta(hours=i),
                             interval="1h", open=1.0, high=1.0, low=1.0, close=1.0, volume=0,
                             source="synthetic")) for i in range(30_000))
    stack.produce("raw", flood, key=b"BTC-USD")
    again = stack.run_module("stockpipe.producer", **synthetic(200, TICKERS="BTC-USD", RESUME_SCAN="1000"))
    assert "published 200 bars" in again.stdout
    ts = [b.ts for b in series(stack, "BTC-USD")]
    assert len(ts) == 500 and len(set(ts)) == 500  # nothing sent twice
    assert all(b - a == timedelta(minutes=1) for a, b in zip(ts, ts[1:]))  # continued, no gap


def test_a_synthetic_producer_never_continues_real_bars(stack: Stack) -> None:
    real = [Bar(symbol="AAPL", ts=datetime(2024, 1, 2, 14, 30, tzinfo=UTC) + timedelta(minutes=i), interval="1m",
                open=190.0, high=190.5, low=189.5, close=190.0, volume=1000, source="yfinance") for i in range(5)]
    stack.produce("raw", (BARS.encode(b) for b in real), key=b"AAPL")
    out = stack.run_module("stockpipe.producer", **synthetic(50, TICKERS="AAPL,MSFT"))
    assert "not publishing AAPL 1m: its last bar on raw came from yfinance" in out.stdout + out.stderr
    aapl = series(stack, "AAPL")
    assert [b.source for b in aapl] == ["yfinance"] * 5  # untouched
    assert len(series(stack, "MSFT")) == 50
