"""NYSE full-day holidays by rule, and synthetic equity sessions that skip them."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from itertools import takewhile

import pytest

from stockpipe.producer.sources.holidays import easter_sunday, is_nyse_holiday, nyse_holidays
from stockpipe.producer.sources.synthetic import SyntheticSource

NOW = lambda: datetime(2030, 1, 1, tzinfo=UTC)  # noqa: E731 - far ahead: no live waiting

# NYSE's published holiday calendars (nyse.com, "Holidays & Trading Hours"), full-day closures.
PUBLISHED = {
    2023: ["2023-01-02", "2023-01-16", "2023-02-20", "2023-04-07", "2023-05-29", "2023-06-19", "2023-07-04",
           "2023-09-04", "2023-11-23", "2023-12-25"],
    2024: ["2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19", "2024-07-04",
           "2024-09-02", "2024-11-28", "2024-12-25"],
    2025: ["2025-01-01", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26", "2025-06-19", "2025-07-04",
           "2025-09-01", "2025-11-27", "2025-12-25"],
    2026: ["2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19", "2026-07-03",
           "2026-09-07", "2026-11-26", "2026-12-25"],
    2027: ["2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18", "2027-07-05",
           "2027-09-06", "2027-11-25", "2027-12-24"],
    # New Year's Day 2022 was a Saturday: not observed (Friday 2021-12-31 was a trading day).
    2022: ["2022-01-17", "2022-02-21", "2022-04-15", "2022-05-30", "2022-06-20", "2022-07-04", "2022-09-05",
           "2022-11-24", "2022-12-26"],
}


@pytest.mark.parametrize("year", sorted(PUBLISHED))
def test_holidays_equal_the_published_calendar(year: int) -> None:
    assert sorted(nyse_holidays(year)) == [date.fromisoformat(d) for d in PUBLISHED[year]]


@pytest.mark.parametrize(("day", "holiday"), [
    ("2026-11-26", True),  # Thanksgiving: fourth Thursday of November
    ("2026-11-27", False),  # the day after: an early close, still a session
    ("2026-04-03", True),  # Good Friday (Easter 2026-04-05)
    ("2027-07-05", True),  # Independence Day on a Sunday: observed Monday
    ("2026-07-03", True),  # Independence Day on a Saturday: observed Friday
    ("2021-12-31", False),  # New Year's Day 2022 on a Saturday: not observed on the Friday
    ("2027-12-31", False),  # nor before 2028's
    ("2023-01-02", True),  # New Year's Day on a Sunday: observed Monday
    ("2021-06-18", False),  # Juneteenth became an NYSE holiday in 2022
    ("1997-01-20", False),  # MLK Day: from 1998
    ("1998-01-19", True),
    ("2026-11-28", False),  # a Saturday is no holiday here (weekends are closed anyway)
])
def test_known_dates(day: str, holiday: bool) -> None:
    assert is_nyse_holiday(date.fromisoformat(day)) is holiday


@pytest.mark.parametrize(("year", "easter"), [
    (2000, "2000-04-23"), (2019, "2019-04-21"), (2024, "2024-03-31"), (2025, "2025-04-20"),
    (2026, "2026-04-05"), (2038, "2038-04-25"), (2285, "2285-03-22"),  # 2285: the earliest possible date
])
def test_easter(year: int, easter: str) -> None:
    assert easter_sunday(year) == date.fromisoformat(easter)


@pytest.mark.parametrize("year", range(1990, 2101))
def test_every_holiday_is_a_weekday_and_there_are_nine_or_ten(year: int) -> None:
    days = nyse_holidays(year)
    assert all(d.weekday() < 5 and d.year == year for d in days)
    assert len(days) == (8 if year < 1998 else 9 if year < 2022 else 10) - (date(year, 1, 1).weekday() == 5)


def bars_between(symbol: str, start: datetime, end: datetime, interval: str = "1m") -> list:
    source = SyntheticSource([symbol], interval=interval, rate=0, start=start, clock=NOW)
    return list(takewhile(lambda b: b.ts < end, source.bars({}, threading.Event())))


def test_synthetic_equities_skip_thanksgiving_crypto_and_fx_do_not() -> None:
    # Monday 2026-11-23 00:00Z to Saturday 2026-11-28 00:00Z (New York on EST, UTC-5).
    start, end = datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    aapl = bars_between("AAPL", start, end)
    assert {b.ts.date() for b in aapl} == {date(2026, 11, d) for d in (23, 24, 25, 27)}
    assert len(aapl) == 4 * 390  # the early close of Friday 27th is not modelled
    assert len(bars_between("BTC-USD", start, end)) == 5 * 1440
    # FX: Monday to Friday 17:00 New York (22:00Z), Thanksgiving included.
    assert len(bars_between("EURUSD=X", start, end)) == 4 * 1440 + 22 * 60


# Bars are checked against the wall clock when made (none may lie in the future): the
# synthetic tests use holidays that have passed; the calendar tests above cover later years.


def test_synthetic_equity_daily_bars_skip_holidays_fx_daily_bars_skip_weekends_only() -> None:
    start, end = datetime(2025, 12, 22, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC)
    aapl = {b.ts.date() for b in bars_between("AAPL", start, end, "1d")}
    fx = {b.ts.date() for b in bars_between("EURUSD=X", start, end, "1d")}
    weekdays = {d for i in range(19) if (d := start.date() + timedelta(days=i)).weekday() < 5}
    assert fx == weekdays  # Christmas and New Year's Day included: FX keeps trading, thinly
    assert aapl == weekdays - {date(2025, 12, 25), date(2026, 1, 1)}


def test_synthetic_equities_skip_good_friday_and_the_observed_independence_day() -> None:
    good_friday = bars_between("AAPL", datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC))
    assert {b.ts.date() for b in good_friday} == {date(2026, 4, 2), date(2026, 4, 6)}
    # July 4, 2021 was a Sunday, as July 4, 2027 will be: observed on Monday the 5th.
    july = bars_between("MSFT", datetime(2021, 7, 2, tzinfo=UTC), datetime(2021, 7, 7, tzinfo=UTC))
    assert {b.ts.date() for b in july} == {date(2021, 7, 2), date(2021, 7, 6)}


def test_history_counts_equity_bars_across_a_holiday_weekend() -> None:
    # Friday 2025-12-26 14:30Z is the first minute of the session after Christmas (Thursday):
    # 800 bars of history are Wednesday's and Tuesday's 390 each and Monday's last 20.
    now = datetime(2025, 12, 26, 14, 30, tzinfo=UTC)
    source = SyntheticSource(["AAPL"], rate=0, history=800, clock=lambda: now)
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    bars = list(source.bars({}, stop))
    timer.cancel()
    assert len(bars) == 800
    assert not [b for b in bars if b.ts.date() == date(2025, 12, 25)]
    assert bars[0].ts.date() == date(2025, 12, 22)
