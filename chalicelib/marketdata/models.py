"""Shapes of market data: bars and the read queries. The bar sizes they accept are
`chalicelib.market.timeframes`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from chalicelib.market.timeframes import Timeframe
from chalicelib.marketdata.cursor import Sort

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


Adjusted = Annotated[
    bool,
    Meta(
        description="`true`: prices and volumes in today's shares (split-adjusted, as Polygon's "
        "`adjusted=true`); `false`: as traded. The answer says which it served."
    ),
]
"""The `adjusted` query parameter of the bar endpoints."""

_BOUND = (
    "a date (YYYY-MM-DD: the whole UTC day), an RFC 3339 datetime with a zone, or epoch "
    "milliseconds"
)


class BarQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string shared by the bar endpoints; both bounds are inclusive."""

    timeframe: Annotated[Timeframe, Meta(description="Bar size.")] = "1d"
    start: Annotated[
        str | None,
        Meta(description=f"First bar time, inclusive: {_BOUND}. Default: the first bar."),
    ] = None
    end: Annotated[
        str | None,
        Meta(description=f"Last bar time, inclusive: {_BOUND}. Default: the last bar."),
    ] = None
    validated_only: Annotated[
        bool, Meta(description="Only bars that passed validation (no severe flag).")
    ] = True
    adjusted: Adjusted = True
    sort: Annotated[
        Sort,
        Meta(description="`asc`: oldest first; `desc`: newest first (with `limit`, the newest N)."),
    ] = "asc"
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
    format: Annotated[
        Literal["json", "csv"] | None,
        Meta(
            description="`csv` or `json`; wins over the `Accept` header (`text/csv` or "
            "`application/json`), which decides when this is absent."
        ),
    ] = None


class HistoricalQuery(BarQuery, forbid_unknown_fields=True, frozen=True):
    """Query string of `GET /api/v1/historical/{symbol}`."""


class HistoricalPage(msgspec.Struct, frozen=True):
    """One page of bars in the requested order; `next_cursor` is null on the last page.
    `start` and `end` echo the bounds in their canonical spelling."""

    symbol: str
    timeframe: str
    adjusted: Annotated[
        bool, Meta(description="Whether prices are split-adjusted (`true`) or as traded.")
    ]
    start: str | None
    end: str | None
    count: int
    bars: list[Bar]
    next_cursor: str | None


MAX_SYMBOLS_PER_REQUEST = 100

_SYMBOLS = (
    f"Comma-separated symbols, 1 to {MAX_SYMBOLS_PER_REQUEST}, in any accepted spelling "
    "(`AAPL,MSFT,BTC-USD`); each at most once."
)


class LatestQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of `GET /api/v1/latest`."""

    symbols: Annotated[str, Meta(description=_SYMBOLS)]
    timeframe: Annotated[Timeframe, Meta(description="Bar size.")] = "1d"
    validated_only: Annotated[
        bool, Meta(description="The last bar that passed validation (no severe flag).")
    ] = True
    adjusted: Adjusted = True


class SymbolBar(msgspec.Struct, frozen=True):
    """One bar with its symbol: a row of the long format the multi-symbol endpoints serve."""

    symbol: str
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


class LatestBars(msgspec.Struct, frozen=True):
    """Each requested symbol's last bar, by symbol. A symbol whose bars all fail validation
    (with `validated_only`) has no row."""

    timeframe: str
    adjusted: Annotated[
        bool, Meta(description="Whether prices are split-adjusted (`true`) or as traded.")
    ]
    count: int
    bars: list[SymbolBar]


class BarsQuery(BarQuery, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Query string of `GET /api/v1/bars`."""

    symbols: Annotated[str, Meta(description=_SYMBOLS)]


class BarsPage(msgspec.Struct, frozen=True):
    """One page of long-format rows ordered by symbol, then time in the requested order;
    `next_cursor` is null on the last page."""

    timeframe: str
    adjusted: Annotated[
        bool, Meta(description="Whether prices are split-adjusted (`true`) or as traded.")
    ]
    symbols: list[str]
    start: str | None
    end: str | None
    count: int
    bars: list[SymbolBar]
    next_cursor: str | None


class SymbolReadiness(msgspec.Struct, frozen=True):
    """A requested symbol: its tracked timeframes (None: not tracked), whether it has bars at
    the timeframe asked for, and that timeframe's backfill state."""

    symbol: str
    timeframes: list[str] | None
    has_bars: bool
    backfill_status: str | None
    last_backfill: datetime | None


class LatestRow(msgspec.Struct, frozen=True):
    """A requested symbol with its tracked timeframes (None: not tracked) and its last bar
    (None: no bar at that timeframe)."""

    symbol: str
    timeframes: list[str] | None
    bar: Bar | None


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
