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

# The same names as a type, so request models reject an unknown timeframe while decoding.
Timeframe = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]

DEFAULT_TIMEFRAMES: tuple[Timeframe, ...] = ("1d",)

# Aware UTC datetimes; the annotation makes the API document say `format: date-time`.
UtcDateTime = Annotated[datetime, Meta(tz=True)]

DEFAULT_PAGE_LIMIT = 5000
MAX_PAGE_LIMIT = 50_000
# Minute bars are the ones clients pull in bulk; the response's byte cap still applies.
MAX_MINUTE_PAGE_LIMIT = 100_000


class Bar(msgspec.Struct, frozen=True):
    """One OHLCV bar as stored and as served; `time` is the start of its window, UTC."""

    time: UtcDateTime
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

    timeframe: Annotated[Timeframe, Meta(description="Bar size.")] = "1d"
    start: Annotated[
        date | None,
        Meta(description="First UTC day (YYYY-MM-DD), inclusive; default: the first bar."),
    ] = None
    end: Annotated[
        date | None,
        Meta(description="Last UTC day (YYYY-MM-DD), inclusive; default: the last bar."),
    ] = None
    validated_only: Annotated[
        bool, Meta(description="Only bars that passed validation (no severe flag).")
    ] = True
    limit: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_MINUTE_PAGE_LIMIT,
            description=f"Bars per page, at most {MAX_PAGE_LIMIT:,} ({MAX_MINUTE_PAGE_LIMIT:,} "
            "for `1m`). A page is also cut short to stay under 6 MB; follow next_cursor.",
        ),
    ] = DEFAULT_PAGE_LIMIT
    cursor: Annotated[
        str | None,
        Meta(description="next_cursor from the previous page, with the same other parameters."),
    ] = None


class HistoricalPage(msgspec.Struct, frozen=True):
    """One page of bars, oldest first; `next_cursor` is null on the last page."""

    symbol: str
    timeframe: str
    start: date | None
    end: date | None
    count: int
    bars: list[Bar]
    next_cursor: str | None


class TimeframeBackfill(msgspec.Struct, frozen=True):
    """Where one tracked timeframe's backfill stands: `pending` (never run), `in_progress`,
    `completed` or `failed` (with the last failure's error, cleared by the next success)."""

    status: str
    last_backfill: UtcDateTime | None
    last_error: str | None


class SymbolSummary(msgspec.Struct, frozen=True):
    """An active symbol as readers see it: what is tracked, which bars exist, and each tracked
    timeframe's backfill."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    first_bar: UtcDateTime | None
    last_bar: UtcDateTime | None
    backfill: dict[str, TimeframeBackfill] = msgspec.field(default_factory=dict)


class SymbolSummaryList(msgspec.Struct, frozen=True):
    symbols: list[SymbolSummary]
    count: int


class TimeframeBackfillRow(msgspec.Struct, frozen=True):
    """A tracked (symbol, timeframe) of an active symbol and its backfill state."""

    symbol: str
    timeframe: str
    status: str
    last_backfill: datetime | None
    last_error: str | None


class SymbolRange(msgspec.Struct, frozen=True):
    """An active symbol with the first and last bar over its tracked timeframes."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    first_bar: datetime | None
    last_bar: datetime | None


class StalestSymbol(msgspec.Struct, frozen=True):
    symbol: str
    backfill_status: str
    last_backfill: datetime | None


class TimeframeReadiness(msgspec.Struct, frozen=True):
    """Whether one (symbol, timeframe) has bars, and its backfill state (None: no row yet)."""

    has_bars: bool
    backfill_status: str | None
    last_backfill: datetime | None


class BackfillRunRow(msgspec.Struct, frozen=True):
    """A `backfill_runs` row."""

    id: int
    symbol: str
    timeframe: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    bars_written: int
    provider_requests: int
    error: str | None


class StalestSymbolOut(msgspec.Struct, frozen=True):
    """The active symbol whose last successful backfill is oldest (never backfilled first)."""

    symbol: str
    backfill_status: str
    last_backfill: UtcDateTime | None


class BackfillRunOut(msgspec.Struct, frozen=True):
    """The most recent backfill run of any symbol and timeframe."""

    id: int
    symbol: str
    timeframe: str
    status: str
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    bars_written: int
    provider_requests: int
    error: str | None


class SymbolCounts(msgspec.Struct, frozen=True):
    """Active symbols by roll-up status; every tracked timeframe by its own (new ones: pending)."""

    total: int
    by_backfill_status: dict[str, int]
    timeframes_by_backfill_status: dict[str, int]


class PipelineStatus(msgspec.Struct, frozen=True):
    """`GET /api/v1/status`: how current and how clean the warehouse is."""

    symbols: SymbolCounts
    stalest_symbol: StalestSymbolOut | None
    last_run: BackfillRunOut | None
    bars: int
    validated_bars: int
    validation_rate: float | None
