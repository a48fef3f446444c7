"""Gap counting: expected daily sessions inside a stored range that have no daily bar.

Stocks and ETFs expect a bar on every NYSE session, crypto on every UTC day (the calendar
module decides which). Only the range between the first and last stored bar counts: days
before the first backfill, or not yet fetched, are not gaps.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from chalicelib.market.calendar import expected_sessions, market_zone


def daily_bar_zone(asset_class: str) -> str:
    """The zone in which a daily bar's start time falls on its trading day: Polygon stamps
    stock and ETF daily bars at midnight New York time, crypto daily bars at midnight UTC.
    Named as PostgreSQL's `AT TIME ZONE` expects it."""
    return str(market_zone(asset_class))


def count_gaps(asset_class: str, bar_days: Collection[date]) -> int:
    """How many expected sessions between the first and last of `bar_days` have no bar."""
    return len(missing_sessions(asset_class, bar_days))


def missing_sessions(asset_class: str, bar_days: Collection[date]) -> list[date]:
    """Expected sessions between the first and last of `bar_days` with no bar, oldest first."""
    if not bar_days:
        return []
    present = set(bar_days)
    expected = expected_sessions(asset_class, min(present), max(present))
    return [day for day in expected if day not in present]
