"""The dashboard's SQL on a filled database: every statement index-backed, read-only role.

``fill_history`` is also what the API tests and ``bench/dashboard.py`` load: realistic rows
(a geometric random walk per symbol, indicators and alerts from the analytics service's own
``Processor``, forecasts and registry rows like the forecaster's), COPYed in.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg2
import pytest

from stockpipe.analytics.processor import Processor
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.db import copy_line
from stockpipe.common.errors import TransientError
from stockpipe.common.messages import INDICATOR_FIELDS, Bar
from stockpipe.dashboard.queries import SQL, Reader
from stockpipe.dashboard.settings import DashboardSettings

from harness import Stack

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 2, tzinfo=UTC)
_COPY_ROWS = 200_000  # rows per COPY round: bounded memory for 2M-row benchmark fills


def _copy(conn, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor() as cur:
        for i in range(0, len(rows), _COPY_ROWS):
            data = "".join(copy_line(r) for r in rows[i:i + _COPY_ROWS]).encode()
            cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN", io.BytesIO(data))
    conn.commit()


def fill_history(dsn: str, symbols: list[str], bars: int, *, start: datetime = START, interval: str = "1m",
                 source: str = "synthetic", seed: int = 7, forecast_runs: int = 3, horizon: int = 30) -> dict:
    """Load ``bars`` bars per symbol with their indicators, alerts, forecasts and models.

    Returns counts per table. Prices: geometric random walk (0.1 % per bar), volume log-normal.
    """
    rng = np.random.default_rng(seed)
    settings = AnalyticsSettings()
    step = timedelta(minutes=1) if interval == "1m" else timedelta(days=1)
    counts = dict.fromkeys(("price_bars", "indicators", "alerts", "forecasts", "models"), 0)
    conn = psycopg2.connect(dsn)
    try:
        for n, symbol in enumerate(symbols):
            processor = Processor(settings.indicator_config(), settings.alert_config())
            closes = 50 * (1 + n % 7) * np.exp(np.cumsum(rng.normal(0, 0.001, bars)))
            opens = np.concatenate([[closes[0]], closes[:-1]])
            spread = np.abs(rng.normal(0, 0.0008, bars)) * closes
            highs = np.maximum(opens, closes) + spread
            lows = np.minimum(opens, closes) - spread
            volumes = rng.lognormal(8, 0.6, bars).astype(np.int64)
            bar_rows, ind_rows, alert_rows = [], [], []
            for i in range(bars):
                ts = start + i * step
                bar = Bar(symbol=symbol, ts=ts, interval=interval, open=float(opens[i]), high=float(highs[i]),
                          low=float(lows[i]), close=float(closes[i]), volume=int(volumes[i]), source=source)
                bar_rows.append((symbol, interval, ts, bar.open, bar.high, bar.low, bar.close, bar.volume, source))
                ind, alerts = processor.process(bar)
                if ind is not None:
                    ind_rows.append((symbol, interval, ts, ind.close, *(getattr(ind, f) for f in INDICATOR_FIELDS)))
                alert_rows += [(a.id, a.symbol, a.interval, a.ts, a.rule, a.value, a.threshold, a.message)
                               for a in alerts]
            _copy(conn, "price_bars", ("symbol", "interval", "ts", "open", "high", "low", "close", "volume", "source"),
                  bar_rows)
            _copy(conn, "indicators", ("symbol", "interval", "ts", "close", *INDICATOR_FIELDS), ind_rows)
            _copy(conn, "alerts", ("id", "symbol", "interval", "ts", "rule", "value", "threshold", "message"),
                  alert_rows)
            last_ts, last_close = start + (bars - 1) * step, float(closes[-1])
            fc_rows = []
            for run in range(forecast_runs):
                made_at = last_ts - (forecast_runs - 1 - run) * horizon * step
                for model, scale in (("arima(1,1,1)", 1.0), ("naive", 0.0)):
                    for h in range(1, horizon + 1):
                        yhat = last_close * (1 + scale * 0.0002 * h)
                        half = last_close * 0.001 * 1.96 * math.sqrt(h)
                        fc_rows.append((symbol, interval, made_at, model, made_at + h * step, yhat,
                                        yhat - half, yhat + half))
            _copy(conn, "forecasts", ("symbol", "interval", "made_at", "model", "target_ts", "yhat", "lo", "hi"),
                  fc_rows)
            with conn.cursor() as cur:
                for kind, mase, coverage in (("arima", 1.04, 0.93), ("naive", 1.0, 0.95)):
                    cur.execute('INSERT INTO models (symbol, "interval", kind, params, metrics, trained_at) VALUES '
                                "(%s, %s, %s, %s, %s, %s)",
                                (symbol, interval, kind, json.dumps({"order": [1, 1, 1]} if kind == "arima" else {}),
                                 json.dumps({"mase": mase, "coverage": coverage, "horizon": horizon}), last_ts))
            conn.commit()
            counts["price_bars"] += len(bar_rows)
            counts["indicators"] += len(ind_rows)
            counts["alerts"] += len(alert_rows)
            counts["forecasts"] += len(fc_rows)
            counts["models"] += 2
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return counts


SYMBOLS = [f"SYN{i:04d}" for i in range(1, 13)]
BARS = 6_000
BIG = ("price_bars", "indicators", "alerts", "forecasts")
T0, T1 = START + timedelta(days=1), START + timedelta(days=2)


def example_params(name: str) -> dict:
    """Typical parameters of each statement (the test fails for a statement without them)."""
    series = {"symbol": "SYN0003", "interval": "1m"}
    window = {**series, "start": T0, "end": T1}
    return {
        "series": {"symbol": None, "limit": 1000},
        "overview": {"span": 86_400, "spark": 120},
        "bounds": series,
        "bars": {**window, "after": T0 + timedelta(hours=3), "limit": 1001},
        "bars_bucketed": {**window, "width": 600, "limit": 2001},
        "chart_bucketed": {**window, "width": 600, "limit": 2001},
        "indicators": {**window, "after": START, "limit": 1001},
        "indicators_bucketed": {**window, "width": 600, "limit": 2001},
        "series_alerts": {**window, "limit": 500},
        "alerts_feed": {"symbol": None, "interval": None, "rule": None, "start": START, "end": T1,
                        "cursor_ts": T0, "cursor_id": "00000000-0000-0000-0000-000000000000", "limit": 26},
        "alert_rules": {},
        "forecasts": {**series, "start": START, "end": T1, "cursor_made": None, "cursor_model": None,
                      "cursor_ts": None, "limit": 1001},
        "latest_forecasts": series,
        "models": {"symbol": "SYN0003", "cursor_trained": None, "cursor_id": None, "limit": 21},
        "last_ts": series,
    }[name]


# Variants the API and pages also run: each filter of the alerts feed on its own.
VARIANTS = [
    ("alerts_feed", {"symbol": "SYN0003", "rule": None, "cursor_ts": None, "cursor_id": None}),
    ("alerts_feed", {"rule": "rsi_overbought", "cursor_ts": None, "cursor_id": None}),
    ("alerts_feed", {"symbol": "SYN0003", "interval": "1m", "rule": "price_change"}),
    ("series", {"symbol": "SYN0005"}),
    ("models", {"symbol": None, "cursor_trained": T1, "cursor_id": 10}),
]


@pytest.fixture(scope="module")
def filled(infra_env, tmp_path_factory) -> Stack:
    stack = Stack(infra_env, tmp_path_factory.mktemp("dashboard-queries")).create()
    fill_history(stack.dsn, SYMBOLS, BARS)
    yield stack
    stack.destroy()


def _plan(stack: Stack, sql: str, params: dict) -> str:
    conn = psycopg2.connect(stack.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN " + sql, params)
            return "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(SQL))
def test_every_statement_uses_an_index_on_the_big_tables(filled: Stack, name: str) -> None:
    plan = _plan(filled, SQL[name], example_params(name))
    for table in BIG:
        assert f"Seq Scan on {table}" not in plan, f"{name} scans {table}:\n{plan}"


@pytest.mark.parametrize(("name", "override"), VARIANTS)
def test_filter_variants_use_an_index(filled: Stack, name: str, override: dict) -> None:
    plan = _plan(filled, SQL[name], {**example_params(name), **override})
    for table in BIG:
        assert f"Seq Scan on {table}" not in plan, f"{name} {override} scans {table}:\n{plan}"


def test_the_dashboard_session_is_read_only_and_runs_as_the_reader_role(filled: Stack) -> None:
    from stockpipe.common.db import Database

    settings = DashboardSettings(postgres_dsn=_secret(filled.dsn))
    db = Database(settings)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT current_user, current_setting('transaction_read_only')")
            assert cur.fetchone() == ("stockpipe_reader", "on")
        # (common.db reports a read-only transaction's refusal as TransientError: fail-over.)
        refused = (psycopg2.Error, TransientError)
        with pytest.raises(refused, match="read-only"), db.transaction() as cur:
            cur.execute("DELETE FROM price_bars")
        with pytest.raises(refused, match="permission denied"), db.transaction() as cur:
            cur.execute("SET transaction_read_only = off; DELETE FROM price_bars")
        assert filled.scalar("SELECT count(*) FROM price_bars") == len(SYMBOLS) * BARS
    finally:
        db.close()


def test_chart_downsamples_every_window_to_at_most_max_points(filled: Stack) -> None:
    from stockpipe.common.db import Database

    reader = Reader(Database(DashboardSettings(postgres_dsn=_secret(filled.dsn))))
    for window, expect_bucketed in (("1h", False), ("1d", True), ("5d", True), ("all", True)):  # 1d = 1,440 bars
        chart = reader.chart("SYN0002", "1m", window, 500)
        n = len(chart.bars["ts"])
        assert 0 < n <= 500 and len(chart.indicators["ts"]) <= 500, (window, n)
        assert bool(chart.bucket_seconds) == expect_bucketed, window
        # Buckets keep the range's extremes: the highest high is the raw data's.
        raw_high = filled.scalar("SELECT max(high) FROM price_bars WHERE symbol = 'SYN0002' AND ts BETWEEN %s AND %s",
                                 (chart.start, chart.end))
        assert max(chart.bars["high"]) == pytest.approx(raw_high)
    assert reader.chart("SYN0002", "1m", "1h", 500).bars["ts"][-1] == START + timedelta(minutes=BARS - 1)
    assert reader.chart("NOPE", "1m", "1d", 500).empty


# The plain definition of a bucket's candle and indicator values (what chart_bucketed must
# equal): first open, max high, min low, last close, summed volume; indicators of its last row.
_REFERENCE = """
SELECT date_bin(%(width)s * interval '1 second', p.ts, '2000-01-01') AS bucket,
       (array_agg(p.open ORDER BY p.ts))[1], max(p.high), min(p.low), (array_agg(p.close ORDER BY p.ts DESC))[1],
       sum(p.volume), (array_agg(i.rsi ORDER BY p.ts DESC))[1], (array_agg(i.macd ORDER BY p.ts DESC))[1]
FROM price_bars p JOIN indicators i USING (symbol, "interval", ts)
WHERE p.symbol = %(symbol)s AND p."interval" = '1m' AND p.ts BETWEEN %(start)s AND %(end)s
GROUP BY 1 ORDER BY 1"""


def test_downsampled_candles_are_honest_ohlc_of_their_bars(filled: Stack) -> None:
    from stockpipe.common.db import Database

    reader = Reader(Database(DashboardSettings(postgres_dsn=_secret(filled.dsn))))
    chart = reader.chart("SYN0004", "1m", "all", 300)
    assert chart.bucket_seconds > 60
    want = filled.query(_REFERENCE, {"width": chart.bucket_seconds, "symbol": "SYN0004", "start": chart.start,
                                     "end": chart.end})
    b, ind = chart.bars, chart.indicators
    got = list(zip(b["ts"], b["open"], b["high"], b["low"], b["close"], b["volume"], ind["rsi"], ind["macd"]))
    assert ind["ts"] == b["ts"] and len(got) == len(want) > 250
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[5] == w[5], (g, w)
        assert g[1:5] == pytest.approx(w[1:5]) and g[6:] == pytest.approx(w[6:], nan_ok=True), (g, w)
    api = reader.bars_bucketed("SYN0004", "1m", chart.start, chart.end, chart.bucket_seconds, 1000)
    assert [r[:6] for r in api] == [r[:6] for r in zip(b["ts"], b["open"], b["high"], b["low"], b["close"], b["volume"])]


def _secret(value: str):
    from stockpipe.common.settings import Secret

    return Secret(value)
