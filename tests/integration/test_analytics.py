"""Analytics through real processes: values, alerts, and state across restarts and rebalances."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC

import numpy as np
import pytest
import talib

from stockpipe.analytics.processor import Processor
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.messages import INDICATOR_FIELDS, Alert, Bar, Codec, Indicators

from harness import Stack, wait_for

pytestmark = pytest.mark.integration

BARS, INDICATORS, ALERTS = Codec(Bar), Codec(Indicators), Codec(Alert)


def publish_synthetic(stack: Stack, n: int, symbols: int) -> None:
    stack.run_module("stockpipe.producer", PRODUCER_SOURCE="synthetic", SYNTHETIC_RATE="0",
                     SYNTHETIC_START="2024-01-02T00:00:00Z", SYNTHETIC_SYMBOLS=str(symbols),
                     MAX_MESSAGES=str(n), COMPANIES="false")


def reference(stack: Stack) -> tuple[dict, dict]:
    """What an uninterrupted replica emits: the processor fed raw in partition order."""
    processor = Processor(AnalyticsSettings().indicator_config(), AnalyticsSettings().alert_config())
    indicators, alerts = {}, {}
    for msg in sorted(stack.consume_all("raw"), key=lambda m: (m.partition(), m.offset())):
        ind, al = processor.process(BARS.decode(msg.value()), msg.partition())
        if ind is not None:
            indicators[(ind.symbol, ind.interval, ind.ts)] = ind
        alerts.update((a.id, a) for a in al)
    return indicators, alerts


def emitted(stack: Stack, kind: str, codec: Codec, key) -> dict:
    out = {}
    for msg in stack.consume_all(kind, timeout=30):
        m = codec.decode(msg.value())
        k = key(m)
        assert out.get(k, m) == m, f"two different {kind} messages for {k}"  # re-emits are identical
        out[k] = m
    return out


def ind_key(m: Indicators):
    return (m.symbol, m.interval, m.ts)


def wait_for_indicators(stack: Stack, expected: int, timeout: float = 120) -> dict:
    def all_there():
        got = emitted(stack, "indicators", INDICATORS, ind_key)
        return got if len(got) >= expected else None
    return wait_for(all_there, timeout, interval=1.0, what=f"{expected} indicator messages")


def test_indicators_and_alerts_reach_their_tables_and_match_talib(stack: Stack) -> None:
    n, symbols = 3_000, 5
    ingestor = stack.start("ingestor")
    analytics = stack.start("analytics")
    analytics.wait_ready()
    publish_synthetic(stack, n, symbols)
    expected_ind, expected_alerts = reference(stack)
    assert len(expected_ind) == n and expected_alerts, "the synthetic walk should raise some alerts"
    wait_for(lambda: stack.scalar("SELECT count(*) FROM indicators") == n, 120, what="indicator rows")
    wait_for(lambda: stack.scalar("SELECT count(*) FROM alerts") == len(expected_alerts), 60, what="alert rows")

    rows = stack.query('SELECT symbol, ts, close, ' + ", ".join(INDICATOR_FIELDS) + ' FROM indicators ORDER BY symbol, ts')
    by_symbol = defaultdict(list)
    for r in rows:
        by_symbol[r[0]].append(r)
    for symbol, series in by_symbol.items():
        close = np.array([r[2] for r in series])
        col = {f: np.array([np.nan if r[3 + i] is None else r[3 + i] for r in series])
               for i, f in enumerate(INDICATOR_FIELDS)}
        upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
        macd, signal, hist = talib.MACD(close, 12, 26, 9)
        golden = {"rsi": talib.RSI(close, 14), "sma_short": talib.SMA(close, 20), "sma_long": talib.SMA(close, 50),
                  "ema_short": talib.EMA(close, 12), "ema_long": talib.EMA(close, 26), "bb_upper": upper,
                  "bb_middle": middle, "bb_lower": lower, "macd": macd, "macd_signal": signal, "macd_hist": hist,
                  "volatility": np.concatenate([[np.nan], talib.STDDEV(np.log(close[1:] / close[:-1]), 20, 1)])}
        for f, want in golden.items():
            got = col[f]
            assert np.array_equal(np.isnan(got), np.isnan(want)), f"{symbol} {f}: warm-up differs from TA-Lib"
            ok = ~np.isnan(want)
            scale = np.maximum(np.abs(want[ok]), 1e-12 * close[ok])  # absolute floor near zero (MACD, hist)
            assert np.all(np.abs(got[ok] - want[ok]) <= 1e-9 * scale), f"{symbol} {f} differs from TA-Lib"

    # The straight run's messages are exactly the reference the restart tests compare with.
    assert emitted(stack, "indicators", INDICATORS, ind_key) == expected_ind
    stored_alerts = {str(r[0]): r[1:] for r in stack.query("SELECT id, symbol, rule, value, threshold FROM alerts")}
    assert set(stored_alerts) == set(expected_alerts)
    for aid, a in expected_alerts.items():
        assert stored_alerts[aid] == (a.symbol, a.rule, a.value, a.threshold)
    assert analytics.terminate() == 0 and ingestor.terminate() == 0


@pytest.mark.parametrize("scenario", ["killed_and_restarted", "two_replicas"])
def test_restart_and_rebalance_emit_what_an_uninterrupted_run_emits(stack: Stack, scenario: str) -> None:
    n, symbols = 60_000, 30
    publish_synthetic(stack, n, symbols)
    if scenario == "killed_and_restarted":
        first = stack.start("analytics", ANALYTICS_BATCH_SIZE=500)
        # Killed early in the run: analytics does 60,000 bars in about a second here.
        wait_for(lambda: stack.count("indicators") >= 2_000, 60, interval=0.01, what="analytics under way")
        first.kill()
        assert len(emitted(stack, "indicators", INDICATORS, ind_key)) < n, "finished before it could be killed"
        second = stack.start("analytics", ANALYTICS_BATCH_SIZE=500)
        replicas = [second]
    else:
        one = stack.start("analytics", ANALYTICS_BATCH_SIZE=500)
        wait_for_indicators(stack, n)  # everything committed by one replica
        two = stack.start("analytics", ANALYTICS_BATCH_SIZE=500)  # a rebalance moves partitions to it
        wait_for(lambda: "state rebuilt" in two.output(), 60, what="the second replica's rebuild")
        publish_synthetic(stack, n, symbols)  # the producer resumes: the same walks continue
        replicas = [one, two]
        n *= 2
    expected_ind, expected_alerts = reference(stack)
    got = wait_for_indicators(stack, n)
    assert set(got) == set(expected_ind)
    diffs = [k for k, v in expected_ind.items() if got[k] != v]  # bit for bit, every field
    assert not diffs, f"{len(diffs)} indicator messages differ, e.g. {diffs[0]}"
    got_alerts = emitted(stack, "alerts", ALERTS, lambda a: a.id)
    assert got_alerts == expected_alerts
    for r in replicas:
        assert r.terminate() == 0
    if scenario == "two_replicas":  # both replicas took part in the second half
        assert all(sum(1 for line in r.output().splitlines() if "partitions assigned" in line) >= 1 for r in replicas)


def test_duplicate_and_late_bars_do_not_change_values(stack: Stack) -> None:
    analytics = stack.start("analytics")
    analytics.wait_ready()
    closes = [100 * math.exp(0.01 * math.sin(i / 3)) for i in range(60)]
    from datetime import datetime, timedelta
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    bars = [Bar(symbol="DUP", ts=t0 + timedelta(minutes=i), interval="1m", open=c, high=c, low=c, close=c,
                volume=10, source="replay") for i, c in enumerate(closes)]
    stream = []
    for i, b in enumerate(bars):
        stream.append(BARS.encode(b))
        if i % 7 == 3:
            stream.append(BARS.encode(b))  # duplicate
        if i % 11 == 5:
            stream.append(BARS.encode(bars[i - 3]))  # late
    stack.produce("raw", stream, key=b"DUP")
    got = wait_for_indicators(stack, len(bars), 60)
    sma = talib.SMA(np.array(closes), 20)
    for i, b in enumerate(bars):
        v = got[(b.symbol, b.interval, b.ts)].sma_short
        assert (v is None) == math.isnan(sma[i]) and (v is None or abs(v - sma[i]) <= 1e-9 * sma[i])
    from harness import metrics_of
    metrics = metrics_of(analytics.port)
    assert metrics[("stockpipe_analytics_duplicate_bars_total", ())] == sum(1 for i in range(60) if i % 7 == 3)
    assert metrics[("stockpipe_analytics_late_bars_total", ())] == sum(1 for i in range(60) if i % 11 == 5)
    assert analytics.terminate() == 0
