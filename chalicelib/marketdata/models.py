"""Shapes of market data: bars and the read queries. The bar sizes they accept are
`chalicelib.market.timeframes`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from chalicelib.market.timeframes import Timeframe

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
    """One backfill run of a symbol and timeframe."""

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
    """`GET /api/v1/status`: how current and how clean the warehouse is. The bar counts are
    kept per (symbol, timeframe) as bars are written, so the call costs the same however many
    bars are stored."""

    symbols: SymbolCounts
    stalest_symbol: StalestSymbolOut | None
    last_run: Annotated[
        BackfillRunOut | None, Meta(description="The newest run, of any symbol and timeframe.")
    ]
    recent_runs: Annotated[
        list[BackfillRunOut],
        Meta(description="The newest runs (up to 10), newest first; the first is `last_run`."),
    ]
    bars: Annotated[int, Meta(description="Bars stored, of every symbol and timeframe.")]
    validated_bars: Annotated[
        int, Meta(description="Of those, the bars that passed validation (no severe flag).")
    ]
    validation_rate: Annotated[
        float | None,
        Meta(description="validated_bars / bars, to 6 decimals; null while no bar is stored."),
    ]
