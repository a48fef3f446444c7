"""Trading calendar: which days have a session, when a session opens and closes, and which
calendar day a moment belongs to in each market.

Stocks and ETFs trade on NYSE sessions (the `holidays` package's NYSE calendar, which includes
one-off closures such as national days of mourning); crypto trades every UTC calendar day.
Polygon stamps a stock's daily bar at midnight New York time and a crypto daily bar at midnight
UTC, so "the day of a bar" is New York's date for the one and UTC's for the other.

A session runs 09:30-16:00 America/New_York, except NYSE's early closes at 13:00: the day after
Thanksgiving, and December 24 and July 3 when they are sessions (a July 3 that is the observed
Independence Day, as on a Friday, is a holiday instead). An early close changes no day's status,
only where its last intraday bars stop. An early close NYSE announces outside these rules is not
modelled.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

from chalicelib.market.tickers import MARKET_ASSET_CLASSES, Market

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)

SESSION_ASSET_CLASSES = frozenset(MARKET_ASSET_CLASSES["stocks"])
ROUND_THE_CLOCK_ASSET_CLASSES = frozenset(MARKET_ASSET_CLASSES["crypto"])

_SATURDAY = 5
_THURSDAY = 3


@cache
def _nyse_holidays(year: int) -> frozenset[date]:
    # Imported here: building the calendar module is free for callers (the API's gap count)
    # that may never ask about a stock. The set is built once per year and process.
    import holidays

    return frozenset(holidays.financial_holidays("NYSE", years=year))


def is_trading_day(day: date) -> bool:
    """Whether NYSE holds a regular session on `day` (a weekday that is not an NYSE holiday)."""
    return day.weekday() < _SATURDAY and day not in _nyse_holidays(day.year)


def trading_days(start: date, end: date) -> list[date]:
    """NYSE sessions from `start` to `end`, both inclusive, oldest first; empty if start > end."""
    return [day for day in _each_day(start, end) if is_trading_day(day)]


def is_early_close(day: date) -> bool:
    """Whether `day` is a session that closes at 13:00 New York: the day after Thanksgiving
    (the fourth Thursday of November), or December 24 or July 3 when either is a session."""
    if not is_trading_day(day):
        return False
    year = day.year
    return day in (date(year, 7, 3), date(year, 12, 24), _day_after_thanksgiving(year))


def session_close(day: date) -> time:
    """When the session of `day` closes in New York: 13:00 on an early close, else 16:00."""
    return EARLY_CLOSE if is_early_close(day) else SESSION_CLOSE


def session_bounds_utc(day: date) -> tuple[datetime, datetime]:
    """The session's open (09:30) and close (16:00, or 13:00 on an early close) in New York on
    `day`, as aware UTC datetimes; daylight saving moves a full session between 13:30-20:00 and
    14:30-21:00 UTC.

    Whether `day` has a session is `is_trading_day`'s question; a day without one gets 16:00.
    """
    opens = datetime.combine(day, SESSION_OPEN, tzinfo=NEW_YORK)
    closes = datetime.combine(day, session_close(day), tzinfo=NEW_YORK)
    return opens.astimezone(UTC), closes.astimezone(UTC)


def expected_sessions(asset_class: str, start: date, end: date) -> list[date]:
    """Days that should carry a daily bar for `asset_class` ("stock", "etf" or "crypto"), from
    `start` to `end` inclusive: NYSE sessions for stocks and ETFs, every UTC day for crypto."""
    if asset_class in SESSION_ASSET_CLASSES:
        return trading_days(start, end)
    if asset_class in ROUND_THE_CLOCK_ASSET_CLASSES:
        return list(_each_day(start, end))
    raise ValueError(f"unknown asset class {asset_class!r}; expected stock, etf or crypto")


def market_zone(asset_class: str) -> tzinfo:
    """The zone whose calendar day is a bar's trading day: New York for stocks and ETFs, UTC
    for crypto."""
    return NEW_YORK if asset_class in SESSION_ASSET_CLASSES else UTC


def market_date(moment: datetime, asset_class: str) -> date:
    """The trading day of a bar start: New York's date for stocks and ETFs, UTC's for crypto."""
    return moment.astimezone(market_zone(asset_class)).date()


def daily_bar_start(day: date, market: Market) -> datetime:
    """Where the range endpoint puts the daily bar of market date `day`: midnight New York for
    stocks, midnight UTC for crypto."""
    # Every asset class of a market shares its zone.
    zone = market_zone(MARKET_ASSET_CLASSES[market][0])
    return datetime.combine(day, time(0), tzinfo=zone)


def _day_after_thanksgiving(year: int) -> date:
    # Thanksgiving is the fourth Thursday of November.
    first_thursday = 1 + (_THURSDAY - date(year, 11, 1).weekday()) % 7
    return date(year, 11, first_thursday + 21 + 1)


def _each_day(start: date, end: date) -> list[date]:
    if start > end:
        return []
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
