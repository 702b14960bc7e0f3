"""Crypto, FX and equities through the forecaster (issue 15): producer → analytics → forecaster → ingestor.

Synthetic 1m bars from Friday 2024-01-05 20:00 UTC (15:00 New York), 420 in time order:
AAPL trades until the 16:00 close (60 bars), EURUSD=X until the FX week ends at 17:00 New
York (120 bars, volume 0 as Yahoo reports FX), BTC-USD around the clock (the other 240, up to
23:59 UTC). Every forecast in the table is checked value by value against the same pure code
run offline on the indicators topic, and its points against the bar times (the last run of
each series is always made; earlier ones may be overtaken under this backlog, as documented):

- BTC-USD: every run's points are the next bars of its interval, ``made_at + k x 1m``, with
  no session gap, across midnight and into the weekend (the bars themselves have none);
- EURUSD=X: bars with volume 0 go through analytics and the forecaster like any other;
- equities and FX at their close: as the README documents, the points are the next interval
  starts on the clock (16:00, 16:01, ... New York), not the next session's bars.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_forecaster import SETTINGS, assert_same, reference, stored

from harness import Stack, wait_for

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 5, 20, 0, tzinfo=UTC)  # a Friday, 15:00 in New York
BARS = {"AAPL": 60, "EURUSD=X": 120, "BTC-USD": 240}
STEPS = SETTINGS["ARIMA_FORECAST_STEPS"]


def runs_at(bars: int) -> list[datetime]:
    """made_at of every ARIMA run a series of ``bars`` 1m bars from START owes."""
    first, every = SETTINGS["ARIMA_MIN_OBSERVATIONS"], SETTINGS["FORECAST_EVERY_BARS"]
    return [START + timedelta(minutes=n - 1) for n in range(first, bars + 1, every)]


def test_crypto_fx_and_equity_forecasts_at_the_next_bar_times(stack: Stack) -> None:
    ingestor = stack.start("ingestor")
    analytics = stack.start("analytics")
    forecaster = stack.start("forecaster", **SETTINGS)
    forecaster.wait_ready(120)
    n = sum(BARS.values())
    stack.run_module("stockpipe.producer", PRODUCER_SOURCE="synthetic", TICKERS=",".join(BARS), SYNTHETIC_RATE="0",
                     SYNTHETIC_START=START.isoformat().replace("+00:00", "Z"), MAX_MESSAGES=str(n),
                     COMPANIES="false", HTTP_PORT="0", timeout=300)

    # The sessions of each asset class, and FX volume 0, as stored.
    wait_for(lambda: stack.scalar("SELECT count(*) FROM price_bars") >= n, 120, what=f"{n} bars stored")
    for symbol, count in BARS.items():
        ts = [r[0] for r in stack.query("SELECT ts FROM price_bars WHERE symbol = %s ORDER BY ts", (symbol,))]
        assert ts == [START + timedelta(minutes=i) for i in range(count)], symbol
    assert stack.scalar("SELECT max(volume) FROM price_bars WHERE symbol = 'EURUSD=X'") == 0
    assert stack.scalar("SELECT min(volume) FROM price_bars WHERE symbol = 'BTC-USD'") > 0

    want = reference(stack, n)
    arima_runs = {s: sorted(t for (sym, t, f) in want if sym == s and f == "arima") for s in BARS}
    assert arima_runs == {s: runs_at(count) for s, count in BARS.items()}
    last = {s: runs[-1] for s, runs in arima_runs.items()}

    def all_last_runs() -> dict | None:
        got = stored(stack)
        return got if all((s, t, "arima") in got for s, t in last.items()) else None

    got = wait_for(all_last_runs, 180, interval=1.0, what="the last forecast run of every symbol")
    assert_same(got, want)

    for (symbol, made_at, family), (_, points) in got.items():
        if family != "arima":
            continue
        # The next bar start times of the interval, never a session's calendar.
        assert [p[0] for p in points] == [made_at + timedelta(minutes=k + 1) for k in range(STEPS)], (symbol, made_at)
        assert all(lo <= yhat <= hi for _, yhat, lo, hi in points)
    # BTC-USD's last run, at its 23:59 UTC bar on Friday: points at midnight and on into Saturday.
    assert runs_at(BARS["BTC-USD"])[-1] == datetime(2024, 1, 5, 23, 59, tzinfo=UTC)
    across_midnight = got[("BTC-USD", datetime(2024, 1, 5, 23, 59, tzinfo=UTC), "arima")][1]
    assert [p[0] for p in across_midnight] == [datetime(2024, 1, 6, 0, k, tzinfo=UTC) for k in range(STEPS)]
    assert all(p[1] > 1000 for p in across_midnight)  # at the coin's price scale
    fx_prices = [p[1] for (s, _, f), (_, pts) in got.items() if s == "EURUSD=X" and f == "arima" for p in pts]
    assert fx_prices and all(0.5 < p < 2.0 for p in fx_prices)
    # At the close (15:59 New York for AAPL, 16:59 for EURUSD=X): plain clock steps after it.
    aapl = got[("AAPL", datetime(2024, 1, 5, 20, 59, tzinfo=UTC), "arima")][1]
    assert aapl[0][0] == datetime(2024, 1, 5, 21, 0, tzinfo=UTC)
    fx_last = got[("EURUSD=X", datetime(2024, 1, 5, 21, 59, tzinfo=UTC), "arima")][1]
    assert fx_last[0][0] == datetime(2024, 1, 5, 22, 0, tzinfo=UTC)

    assert stack.consume_all("dlq", timeout=10) == []
    for p in (forecaster, analytics, ingestor):
        assert p.terminate() == 0
