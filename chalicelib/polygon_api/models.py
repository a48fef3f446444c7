"""Shapes of the Polygon-compatible read API: the query strings it accepts and the bodies it
answers with, field for field as Polygon's OpenAPI spec names them, so Polygon's official
client parses them unchanged."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Timespan = Literal["minute", "hour", "day", "week", "month", "quarter", "year"]
TIMESPANS: tuple[Timespan, ...] = ("minute", "hour", "day", "week", "month", "quarter", "year")
# Polygon's spec lists `second` too; the warehouse stores nothing finer than a minute.
UNSERVED_TIMESPANS = ("second",)

MAX_MULTIPLIER = 1000
DEFAULT_AGGS_LIMIT = 5000
MAX_AGGS_LIMIT = 50_000
DEFAULT_SPLITS_LIMIT = 10
MAX_SPLITS_LIMIT = 1000

Sort = Literal["asc", "desc"]


# Query models ignore parameters they do not know, as Polygon does: the official client sends
# some of its own (the grouped call sends `locale` and `market_type` in the query string too).


class AggsQuery(msgspec.Struct, frozen=True):
    """Query string of the aggregates endpoint."""

    adjusted: Annotated[
        bool,
        Meta(
            description="`true` (the default): prices and volumes in today's shares, "
            "split-adjusted; `false`: as traded. Buckets are built from bars of the kind asked "
            "for. `false` is a 409 while the bars are still the split-adjusted ones stored "
            "before traded prices were kept, until the symbol's next backfill."
        ),
    ] = True
    sort: Annotated[Sort, Meta(description="`asc`: oldest first; `desc`: newest first.")] = "asc"
    limit: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_AGGS_LIMIT,
            description=f"Bars per page, at most {MAX_AGGS_LIMIT:,} (default "
            f"{DEFAULT_AGGS_LIMIT:,}); follow `next_url` for the rest.",
        ),
    ] = DEFAULT_AGGS_LIMIT
    cursor: Annotated[
        str | None,
        Meta(description="Set by `next_url`; never built by hand."),
    ] = None


class GroupedQuery(msgspec.Struct, frozen=True):
    """Query string of the grouped daily endpoints."""

    adjusted: Annotated[
        bool,
        Meta(
            description="Split-adjusted prices (the default) or, with `false`, as traded (a "
            "409 while a symbol's bars are still stored split-adjusted)."
        ),
    ] = True
    include_otc: Annotated[
        bool, Meta(description="Accepted for compatibility; the warehouse tracks no OTC tickers.")
    ] = False


class SplitsQuery(
    msgspec.Struct,
    frozen=True,
    rename={
        "execution_date_gte": "execution_date.gte",
        "execution_date_gt": "execution_date.gt",
        "execution_date_lte": "execution_date.lte",
        "execution_date_lt": "execution_date.lt",
    },
):
    """Query string of `GET /v3/reference/splits` (the subset of Polygon's filters the
    warehouse answers)."""

    ticker: Annotated[str | None, Meta(description="Only this ticker's splits.")] = None
    execution_date: Annotated[date | None, Meta(description="Only splits on this date.")] = None
    execution_date_gte: Annotated[date | None, Meta(description="Executed on or after.")] = None
    execution_date_gt: Annotated[date | None, Meta(description="Executed after.")] = None
    execution_date_lte: Annotated[date | None, Meta(description="Executed on or before.")] = None
    execution_date_lt: Annotated[date | None, Meta(description="Executed before.")] = None
    reverse_split: Annotated[
        bool | None, Meta(description="Only reverse splits (`true`) or only forward ones.")
    ] = None
    order: Annotated[Sort, Meta(description="Direction of the `sort` field.")] = "asc"
    sort: Annotated[
        Literal["execution_date", "ticker"], Meta(description="Field the results are ordered by.")
    ] = "execution_date"
    limit: Annotated[
        int, Meta(ge=1, le=MAX_SPLITS_LIMIT, description="Splits per page, at most 1,000.")
    ] = DEFAULT_SPLITS_LIMIT
    cursor: Annotated[str | None, Meta(description="Set by `next_url`.")] = None


class Agg(msgspec.Struct, frozen=True, omit_defaults=True):
    """One bar as Polygon spells it: `t` is the start of its window, epoch milliseconds."""

    o: float
    h: float
    low: float = msgspec.field(name="l")
    c: float
    v: float
    t: int
    vw: float | None = None
    n: int | None = None


class GroupedAgg(Agg, frozen=True, omit_defaults=True, kw_only=True):
    """One ticker's bar for a grouped day; `T` is the ticker."""

    T: str


class AggsResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """`GET /v2/aggs/ticker/…/range/…`. With no bars, `results` is left out, as Polygon does."""

    ticker: str
    adjusted: bool
    queryCount: int
    resultsCount: int
    status: str
    request_id: str
    results: list[Agg] | msgspec.UnsetType = msgspec.UNSET
    next_url: str | None = None


class GroupedResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """`GET /v2/aggs/grouped/…/{date}`: every tracked ticker's bar of one day."""

    adjusted: bool
    queryCount: int
    resultsCount: int
    status: str
    request_id: str
    results: list[GroupedAgg] | msgspec.UnsetType = msgspec.UNSET


class Split(msgspec.Struct, frozen=True):
    """A split: `split_to` shares for every `split_from` (a 4-for-1 split: from 1, to 4)."""

    id: str
    ticker: str
    execution_date: str
    split_from: float
    split_to: float


class SplitsResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    request_id: str
    results: list[Split]
    next_url: str | None = None


class PolygonError(msgspec.Struct, frozen=True):
    """Polygon's error body, answered by these routes instead of the API's own error body."""

    status: Literal["ERROR"]
    request_id: str
    error: str
