"""Synthetic and replay sources: valid, deterministic, resumable bars."""

from __future__ import annotations

import functools
import math
import threading
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from pathlib import Path

import pytest

from stockpipe.common.messages import Bar, Codec
from stockpipe.producer.sources.replay import ReplaySource
from stockpipe.producer.sources.synthetic import _BLOCK, SyntheticSource, _Walk, synthetic_symbols

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
NOW = lambda: datetime(2030, 1, 1, tzinfo=UTC)  # noqa: E731 - far ahead: no live waiting


def take(source, n: int, resume: dict | None = None) -> list[Bar]:
    return list(islice(source.bars(resume or {}, threading.Event()), n))


def make(symbols=("AAPL", "MSFT"), **kw) -> SyntheticSource:
    return SyntheticSource(list(symbols), rate=0, start=START, clock=NOW, **kw)


def test_synthetic_bars_are_valid_ordered_and_round_robin() -> None:
    bars = take(make(), 2000)
    codec = Codec(Bar)
    for bar in bars:  # survives the consumers' own validation
        assert codec.decode(codec.encode(bar)) == bar
    assert [b.symbol for b in bars[:4]] == ["AAPL", "MSFT", "AAPL", "MSFT"]
    aapl = [b for b in bars if b.symbol == "AAPL"]
    gaps = [(a.ts, b.ts) for a, b in zip(aapl, aapl[1:]) if b.ts - a.ts != timedelta(minutes=1)]
    # Minute after minute within a session; the only jumps: New York's close (16:00 EST =
    # 21:00Z, last bar 20:59) to the next weekday's open (09:30 EST = 14:30Z).
    assert gaps and all((a.hour, a.minute, b.hour, b.minute) == (20, 59, 14, 30) and b.weekday() < 5
                        for a, b in gaps)
    assert all(b.open == a.close for a, b in zip(aapl, aapl[1:]))  # a continuous walk
    assert all(b.source == "synthetic" and b.volume > 0 for b in bars)
    assert len({b.volume for b in aapl}) > 900  # volume varies


def test_synthetic_is_deterministic_per_seed() -> None:
    assert take(make(seed=1), 50) == take(make(seed=1), 50)
    assert take(make(seed=1), 50) != take(make(seed=2), 50)


def test_synthetic_resume_continues_after_last_bar() -> None:
    first = take(make(), 20)
    last = {(b.symbol, b.interval): b for b in first}
    more = take(make(), 4, resume=last)
    assert [b.ts for b in more] == [START + timedelta(minutes=10)] * 2 + [START + timedelta(minutes=11)] * 2
    assert more[0].open == last[("AAPL", "1m")].close


def test_synthetic_never_emits_an_unclosed_bar() -> None:
    now = START + timedelta(minutes=3, seconds=30)
    source = SyntheticSource(["AAPL"], rate=0, start=START, clock=lambda: now)
    stop = threading.Event()
    got = []
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    for bar in source.bars({}, stop):
        got.append(bar)
    timer.cancel()
    assert [b.ts for b in got] == [START + timedelta(minutes=i) for i in range(3)]  # 14:33 still forming


def test_synthetic_symbols() -> None:
    assert synthetic_symbols(3) == ["SYN0001", "SYN0002", "SYN0003"]


def test_replay_reads_valid_rows_and_skips_bad_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = tmp_path / "bars.csv"
    csv.write_text(
        "ts,symbol,open,high,low,close,volume,extra\n"
        "2024-01-02T14:30:00Z,AAPL,10,11,9,10.5,100,x\n"
        "2024-01-02T14:31:00,AAPL,10.5,12,10,11,200,x\n"  # no offset: UTC
        "2024-01-02T14:32:00Z,AAPL,10,9,11,10,100,x\n"  # high < low
        "2024-01-02T14:33:00Z,AAPL,nan,11,9,10,100,x\n"
        "2024-01-02T14:34:00Z,msft,10,11,9,10,1e3,x\n"
    )
    bars = take(ReplaySource(csv), 10)
    assert [(b.symbol, b.ts.minute, b.volume) for b in bars] == [("AAPL", 30, 100), ("AAPL", 31, 200), ("MSFT", 34, 1000)]
    assert all(b.source == "replay" and b.ts.tzinfo is not None for b in bars)
    assert "bars.csv:4 skipped" in caplog.text and "bars.csv:5 skipped" in caplog.text
    resumed = take(ReplaySource(csv), 10, resume={("AAPL", "1m"): bars[1]})
    assert [b.symbol for b in resumed] == ["MSFT"]


def test_replay_requires_its_columns(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("symbol,ts,close\nAAPL,2024-01-02T14:30:00Z,1\n")
    with pytest.raises(ValueError, match="missing columns open, high, low, volume"):
        take(ReplaySource(csv), 1)


# --------------------------------------------------------------------------- asset classes

from stockpipe.producer.sources.synthetic import ASSET_CLASSES, asset_class  # noqa: E402


@pytest.mark.parametrize(("symbol", "kind"), [
    ("AAPL", "equity"), ("BRK-B", "equity"), ("BRK.B", "equity"), ("^GSPC", "equity"),
    ("BTC-USD", "crypto"), ("ETH-USD", "crypto"), ("DOGE-EUR", "crypto"),
    ("EURUSD=X", "fx"), ("USDJPY=X", "fx"), ("SYN0001", "load"),
    ("AAPL.SYN", "equity"), ("BTC-USD.SYN", "crypto"), ("EURUSD=X.SYN", "fx"),
])
def test_asset_class_of_a_symbol(symbol, kind):
    assert asset_class(symbol).name == kind


@functools.cache
def week_of(symbol: str) -> list[Bar]:
    """A week of 1m bars from Friday 2024-05-10 00:00Z to Friday 2024-05-17 00:00Z (New York on EDT)."""
    start = datetime(2024, 5, 10, tzinfo=UTC)
    end = start + timedelta(days=7)
    source = SyntheticSource([symbol], rate=0, start=start, clock=NOW)
    return list(takewhile(lambda b: b.ts < end, source.bars({}, threading.Event())))


def test_equities_trade_only_in_exchange_hours():
    bars = week_of("AAPL")
    assert len(bars) == 5 * 390  # five sessions of 6.5 h (Mon-Thu, and the Friday at the start)
    assert {(b.ts.hour, b.ts.minute) for b in bars if b.ts.minute % 30 == 0} >= {(13, 30), (19, 30)}
    assert all(b.ts.weekday() < 5 and (13, 30) <= (b.ts.hour, b.ts.minute) < (20, 0) for b in bars)
    assert all(b.volume > 0 for b in bars) and all(round(b.close, 2) == b.close for b in bars)


def test_crypto_trades_around_the_clock_every_day():
    bars = week_of("BTC-USD")
    assert len(bars) == 7 * 1440 and {b.ts.weekday() for b in bars} == set(range(7))
    assert 20_000 < bars[0].open < 100_000  # BTC's scale, not a stock's
    assert all(b.volume > 0 for b in bars)


def test_fx_trades_sunday_to_friday_new_york_five_pm_with_zero_volume():
    bars = week_of("EURUSD=X")
    # Friday 00:00Z-21:00Z (17:00 EDT), then nothing until Sunday 21:00Z, then to Friday 00:00Z.
    assert len(bars) == 21 * 60 + (3 + 24 * 4) * 60
    assert not [b for b in bars if b.ts.weekday() == 5]  # Saturday
    assert min(b.ts for b in bars if b.ts.weekday() == 6) == datetime(2024, 5, 12, 21, 0, tzinfo=UTC)
    assert all(b.volume == 0 for b in bars)
    assert 0.5 < bars[0].open < 2.0 and len(f"{bars[0].open:.10f}".rstrip("0").split(".")[1]) > 2


@pytest.mark.parametrize("symbol", ["AAPL", "BTC-USD", "EURUSD=X"])
def test_each_class_has_its_own_volatility(symbol):
    bars = week_of(symbol)
    kind = asset_class(symbol)
    returns = [math.log(b.close / a.close) for a, b in zip(bars, bars[1:]) if b.ts - a.ts == timedelta(minutes=1)]
    mean = sum(returns) / len(returns)
    annual = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns) * kind.minutes_per_year)
    low, high = kind.annual_vol
    assert 0.8 * low < annual < 1.2 * high, annual


def test_fx_is_calmer_than_crypto_per_minute():
    def minute_vol(symbol: str) -> float:
        bars = week_of(symbol)
        r = [math.log(b.close / a.close) for a, b in zip(bars, bars[1:])]
        return math.sqrt(sum(x * x for x in r) / len(r))

    assert minute_vol("EURUSD=X") < minute_vol("BTC-USD")
    assert set(ASSET_CLASSES) == {"equity", "crypto", "fx", "load"}


@pytest.mark.parametrize("now", [datetime(2024, 1, 6, 3, 0, tzinfo=UTC),  # a Saturday night: no session
                                 datetime(2024, 1, 8, 7, 55, tzinfo=UTC),  # Monday morning: FX's week is young
                                 datetime(2024, 1, 9, 15, 0, tzinfo=UTC)])  # Tuesday, 30 minutes into one
def test_synthetic_history_is_counted_in_bars_of_each_class_session(now: datetime) -> None:
    # SYNTHETIC_HISTORY=300: 300 bars per symbol before now, whatever the hour, for equities
    # (6.5 h a weekday), FX (24/5) and crypto (24/7) alike.
    source = SyntheticSource(["AAPL", "EURUSD=X", "BTC-USD"], rate=0, history=300, clock=lambda: now)
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)  # caught up, the source waits for the next interval to close
    timer.start()
    bars = list(source.bars({}, stop))
    timer.cancel()
    assert all(b.ts + timedelta(minutes=1) <= now for b in bars)
    per_symbol = {s: sum(b.symbol == s for b in bars) for s in ("AAPL", "EURUSD=X", "BTC-USD")}
    assert per_symbol == {"AAPL": 300, "EURUSD=X": 300, "BTC-USD": 300}  # each class from its own start
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)  # still one stream in time order


@pytest.mark.parametrize("symbol", ["AAPL", "DOGE-USD", "EURUSD=X", "USDJPY=X"])
def test_a_walk_keeps_its_invariants_across_blocks_and_down_to_one_tick(symbol):
    walk = _Walk(symbol, 7, 1.0)
    walk.mu, walk.sigma = -0.02, 0.05  # a crash: every class reaches its one-tick floor
    walk.restart(walk.price, 1)
    tick = 10.0 ** -walk.decimals
    bars = [walk.bar(START + timedelta(minutes=i), "1m") for i in range(5 * _BLOCK + 3)]  # Bar checks the OHLC order
    assert all(b.open == a.close for a, b in zip(bars, bars[1:]))  # blocks join without a gap
    assert all(round(p, walk.decimals) == p >= tick for b in bars for p in (b.open, b.high, b.low, b.close))
    assert bars[-1].close == tick and bars[-1].volume >= 0


def test_a_restart_continues_from_the_close_it_is_given():
    walk = _Walk("AAPL", 7, 1.0)
    walk.restart(123.456, 5)
    bar = walk.bar(START, "1m")
    assert bar.open == 123.46 and 0.9 < bar.close / bar.open < 1.1
    walk.restart(123.456, 5)
    assert walk.bar(START, "1m") == bar  # the same seed draws the same bar
    walk.restart(0.001, 5)  # below one tick (a close stored at another precision)
    assert walk.bar(START, "1m").open == 0.01
