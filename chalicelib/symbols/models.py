"""Shapes of tracked symbols: requests, rows and responses. How a symbol is spelled (the one
normaliser every entry point uses) is `chalicelib.market.tickers`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from chalicelib.market.tickers import MAX_RAW_SYMBOL_LENGTH, AssetClass
from chalicelib.market.timeframes import DEFAULT_TIMEFRAMES, TIMEFRAMES, Timeframe
from chalicelib.marketdata.models import SymbolSummary, UtcDateTime

# --- Requests -------------------------------------------------------------------------------

TimeframeList = Annotated[
    list[Timeframe],
    Meta(
        min_length=1,
        max_length=len(TIMEFRAMES),
        description=f"Bar sizes to keep, any of {', '.join(TIMEFRAMES)}.",
    ),
]
SymbolText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_RAW_SYMBOL_LENGTH,
        description="Ticker: `AAPL`, `BRK.B`; crypto as `BTC`, `BTC-USD` or `X:BTCUSD`.",
    ),
]


class AddSymbolRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Start tracking a symbol; its first backfill fetches each timeframe's default depth."""

    symbol: SymbolText
    asset_class: AssetClass
    timeframes: TimeframeList = msgspec.field(default_factory=lambda: list(DEFAULT_TIMEFRAMES))


class UpdateSymbolRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Change a tracked symbol; fields left out keep their value. `active: true` reactivates."""

    active: bool | None = None
    asset_class: AssetClass | None = None
    timeframes: TimeframeList | None = None


class SymbolListQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Filters for the admin symbol list; both optional."""

    active: Annotated[bool | None, Meta(description="Only active (or inactive) symbols.")] = None
    asset_class: Annotated[AssetClass | None, Meta(description="Only this asset class.")] = None


# --- Rows and responses -----------------------------------------------------------------------


class TrackedSymbol(msgspec.Struct, frozen=True):
    """A `tracked_symbols` row."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    active: bool
    backfill_status: str
    last_backfill: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class TimeframeCounts(msgspec.Struct, frozen=True):
    """Stored bars of one (symbol, timeframe): how many, how many validated, first and last."""

    timeframe: str
    record_count: int
    validated_count: int
    first: datetime | None
    last: datetime | None


class DateRange(msgspec.Struct, frozen=True):
    """Start times of the first and last stored bar (UTC), or null when there are none."""

    first: UtcDateTime | None
    last: UtcDateTime | None


class TimeframeStats(msgspec.Struct, frozen=True):
    """Quality of one timeframe's stored bars.

    `validation_rate` is validated / all (null with no bars); `gaps_detected` counts expected
    daily sessions inside the stored range with no `1d` bar, and `missing_sessions` lists them
    (oldest first), so both are null for other timeframes.
    """

    record_count: int
    date_range: DateRange
    validation_rate: float | None
    gaps_detected: int | None
    missing_sessions: list[date] | None = None


class SymbolOut(msgspec.Struct, frozen=True):
    """A tracked symbol as the admin endpoints show it."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    active: bool
    backfill_status: str
    last_backfill: UtcDateTime | None
    last_error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def from_row(cls, row: TrackedSymbol) -> SymbolOut:
        return cls(
            symbol=row.symbol,
            asset_class=row.asset_class,
            timeframes=row.timeframes,
            active=row.active,
            backfill_status=row.backfill_status,
            last_backfill=row.last_backfill,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class SymbolDetail(SymbolOut, frozen=True):
    """A tracked symbol with statistics per timeframe (tracked or holding bars)."""

    stats: dict[str, TimeframeStats] = msgspec.field(default_factory=dict)


class SymbolSummaryDetail(SymbolSummary, frozen=True):
    """An active symbol as readers see it, with the statistics of each timeframe (tracked or
    holding bars)."""

    stats: dict[str, TimeframeStats] = msgspec.field(default_factory=dict)


class SymbolList(msgspec.Struct, frozen=True):
    symbols: list[SymbolOut]
    count: int
