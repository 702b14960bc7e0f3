"""NYSE full-day holidays, computed by rule (no calendar data to keep up to date).

The ten holidays on which the New York Stock Exchange (and Nasdaq) close for the whole day,
as NYSE Rule 7.2 lists them:

| holiday | rule |
|---|---|
| New Year's Day | January 1 |
| Martin Luther King Jr. Day | third Monday of January (from 1998) |
| Washington's Birthday (Presidents' Day) | third Monday of February |
| Good Friday | two days before Western (Gregorian) Easter Sunday |
| Memorial Day | last Monday of May |
| Juneteenth | June 19 (from 2022) |
| Independence Day | July 4 |
| Labor Day | first Monday of September |
| Thanksgiving Day | fourth Thursday of November |
| Christmas Day | December 25 |

Weekend observance (Rule 7.2): a fixed-date holiday on a Sunday is observed on the Monday
after, on a Saturday on the Friday before, except when that Friday ends a monthly or yearly
accounting period: New Year's Day on a Saturday is not observed at all (the market is open on
Friday December 31, as on 2021-12-31 and 2027-12-31).

Not modelled: early closes at 13:00 (the day after Thanksgiving, July 3, December 24) and
one-off closures (national days of mourning, 2001-09-11 to 14, hurricane Sandy in 2012).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

__all__ = ["nyse_holidays", "is_nyse_holiday", "easter_sunday"]

_MONDAY, _THURSDAY = 0, 3
_SATURDAY, _SUNDAY = 5, 6


def easter_sunday(year: int) -> date:
    """Western Easter Sunday of ``year`` (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (0 = Monday) of the month; ``n = -1``: the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date | None:
    """Where a fixed-date holiday falls on the weekday calendar (None: not observed)."""
    if day.weekday() == _SUNDAY:
        return day + timedelta(days=1)
    if day.weekday() == _SATURDAY:
        if day.month == 1 and day.day == 1:
            return None  # the Friday before is December 31: the end of the accounting year
        return day - timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def nyse_holidays(year: int) -> frozenset[date]:
    """The weekdays of ``year`` on which NYSE is closed all day (module docstring)."""
    days = [
        _observed(date(year, 1, 1)),
        _nth_weekday(year, 2, _MONDAY, 3),
        easter_sunday(year) - timedelta(days=2),
        _nth_weekday(year, 5, _MONDAY, -1),
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, _MONDAY, 1),
        _nth_weekday(year, 11, _THURSDAY, 4),
        _observed(date(year, 12, 25)),
    ]
    if year >= 1998:
        days.append(_nth_weekday(year, 1, _MONDAY, 3))
    if year >= 2022:
        days.append(_observed(date(year, 6, 19)))
    return frozenset(d for d in days if d is not None)


def is_nyse_holiday(day: date) -> bool:
    """Whether NYSE is closed all day on ``day`` for a holiday (weekends are not holidays here)."""
    return day in nyse_holidays(day.year)
