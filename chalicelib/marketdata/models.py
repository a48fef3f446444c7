"""Shapes of market data: timeframes and their Polygon mapping, bars, and the read queries.

`TIMEFRAMES` is the one list of bar sizes the warehouse knows; the backfill fetches with it and
the read endpoints validate with it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta


class PolygonTimespan(NamedTuple):
    """How Polygon's aggregates endpoint spells a bar size: `/range/{multiplier}/{timespan}/`."""

    multiplier: int
    timespan: str


TIMEFRAMES: dict[str, PolygonTimespan] = {
    "1m": PolygonTimespan(1, "minute"),
    "5m": PolygonTimespan(5, "minute"),
    "15m": PolygonTimespan(15, "minute"),
    "30m": PolygonTimespan(30, "minute"),
    "1h": PolygonTimespan(1, "hour"),
    "4h": PolygonTimespan(4, "hour"),
    "1d": PolygonTimespan(1, "day"),
    "1w": PolygonTimespan(1, "week"),
}
"""Timeframe name → Polygon (multiplier, timespan), smallest first."""

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
    "1w": 604_800,
}
"""Nominal length of one bar of each timeframe."""

DEFAULT_TIMEFRAMES: tuple[str, ...] = ("1d",)

# The same names as a type, so request models reject an unknown timeframe while decoding.
Timeframe = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]

DEFAULT_PAGE_LIMIT = 5000
MAX_PAGE_LIMIT = 50_000
# Minute bars are the ones clients pull in bulk; the response's byte cap still applies.
MAX_MINUTE_PAGE_LIMIT = 100_000


class Bar(msgspec.Struct, frozen=True):
    """One OHLCV bar as stored and as served; `time` is the start of its window, UTC."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trades: int | None
    validated: bool
    flags: list[str]


class HistoricalQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of `GET /api/v1/historical/{symbol}`; dates are UTC days, both inclusive."""

    timeframe: Timeframe = "1d"
    start: date | None = None
    end: date | None = None
    validated_only: bool = True
    limit: Annotated[int, Meta(ge=1, le=MAX_MINUTE_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT
    cursor: Annotated[str, Meta(min_length=1, max_length=512)] | None = None


class HistoricalPage(msgspec.Struct, frozen=True):
    """One page of bars, oldest first; `next_cursor` is null on the last page."""

    symbol: str
    timeframe: str
    start: date | None
    end: date | None
    count: int
    bars: list[Bar]
    next_cursor: str | None
