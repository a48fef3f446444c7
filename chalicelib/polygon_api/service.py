"""The Polygon-compatible read API: aggregates of any size from stored bars, grouped daily
bars and splits, answered in Polygon's shapes. No HTTP here; the routes translate.

Which stored bars a request reads: a (multiplier, timespan) that is itself a tracked timeframe
(1/day with `1d`, 5/minute with `5m`) is read as stored; any other minute or hour size is
resampled from `1m` bars, and any day, week, month, quarter or year size from `1d` bars.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import BadRequest, NotFound
from chalicelib.market.tickers import normalize_symbol, provider_ticker
from chalicelib.market.timeframes import DAILY, TIMEFRAMES
from chalicelib.marketdata.cursor import CursorQuery, Position, decode_cursor, encode_cursor
from chalicelib.marketdata.gaps import daily_bar_zone
from chalicelib.marketdata.service import (
    MAX_RESPONSE_BYTES,
    refuse_unknown_traded_prices,
    wire_size,
)
from chalicelib.polygon_api import repository
from chalicelib.polygon_api.models import (
    MAX_MULTIPLIER,
    TIMESPANS,
    UNSERVED_TIMESPANS,
    Agg,
    AggsQuery,
    AggsResponse,
    GroupedAgg,
    GroupedQuery,
    GroupedResponse,
    Split,
    SplitsQuery,
    SplitsResponse,
)
from chalicelib.symbols import repository as symbols_repository

Connection = db.Connection

STATUS_OK = "OK"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_PAST = datetime(1, 1, 2, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 30, tzinfo=UTC)
# ASCII digits only, the whole text (`$` would let a trailing newline through).
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MILLIS = re.compile(r"-?[0-9]{1,15}")
_encoder = msgspec.json.Encoder()


class Bucketing(NamedTuple):
    """How a (multiplier, timespan) is served: from which stored timeframe, and how grouped
    (kind None: read as stored)."""

    base_timeframe: str
    kind: repository.BucketKind | None
    step: int


# The largest multiplier of each timespan: intraday buckets are anchored at each local
# midnight, so none may exceed a day.
_MAX_MULTIPLIERS = {"minute": 1440, "hour": 24}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def bucketing(multiplier: int, timespan: str, tracked_timeframes: list[str]) -> Bucketing:
    """The stored timeframe and grouping that serve `multiplier` × `timespan`."""
    for name, spelled in TIMEFRAMES.items():
        if spelled == (multiplier, timespan) and name in tracked_timeframes:
            return Bucketing(name, None, 1)
    if timespan == "minute":
        return Bucketing("1m", "minutes", multiplier)
    if timespan == "hour":
        return Bucketing("1m", "minutes", multiplier * 60)
    if timespan == "day":
        return Bucketing("1d", "days", multiplier)
    if timespan == "week":
        return Bucketing("1d", "weeks", multiplier)
    return Bucketing("1d", "months", multiplier * _MONTHS[timespan])


def parse_multiplier(raw: str, timespan: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise BadRequest(
            f"multiplier must be a positive integer; got {raw[:20]!r}",
            details={"multiplier": raw[:20]},
        )
    value = int(raw)
    maximum = _MAX_MULTIPLIERS.get(timespan, MAX_MULTIPLIER)
    if not 1 <= value <= maximum:
        raise BadRequest(
            f"multiplier must be between 1 and {maximum} for timespan {timespan}; got {value}",
            details={"multiplier": value, "maximum": maximum},
        )
    return value


def parse_timespan(raw: str) -> str:
    if raw in TIMESPANS:
        return raw
    if raw in UNSERVED_TIMESPANS:
        raise BadRequest(
            f"timespan {raw} is not served: the warehouse stores nothing finer than a minute; "
            f"use one of {', '.join(TIMESPANS)}",
            details={"timespan": raw, "allowed": list(TIMESPANS)},
        )
    raise BadRequest(
        f"timespan must be one of {', '.join(TIMESPANS)}; got {raw[:20]!r}",
        details={"timespan": raw[:20], "allowed": list(TIMESPANS)},
    )


def parse_bound(raw: str, name: str, zone: str, *, end: bool) -> datetime:
    """`from`/`to` as Polygon takes them: a date (the market's day in `zone`, whole) or epoch
    milliseconds (an instant, inclusive). The result is an inclusive start or an exclusive
    end."""
    if _DATE.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            day = None
        if day is not None:
            if end:
                day = day + timedelta(days=1) if day < date.max else day
            return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    if _MILLIS.fullmatch(raw):
        try:
            instant = _EPOCH + timedelta(milliseconds=int(raw) + (1 if end else 0))
        except OverflowError:
            instant = None
        if instant is not None and _FAR_PAST < instant < _FAR_FUTURE:
            return instant
    raise BadRequest(
        f"{name} must be a date (YYYY-MM-DD) or a Unix timestamp in milliseconds; got {raw[:40]!r}",
        details={name: raw[:40]},
    )


class AggsRequest(NamedTuple):
    """The path of one aggregates request, as sent."""

    ticker: str
    multiplier: str
    timespan: str
    from_: str
    to: str


def aggs_page(
    conn: Connection,
    request: AggsRequest,
    query: AggsQuery,
    *,
    request_id: str,
    origin: str,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """One page of aggregates as Polygon's JSON body; `origin` (scheme://host) prefixes
    `next_url`."""
    timespan = parse_timespan(request.timespan)
    multiplier = parse_multiplier(request.multiplier, timespan)
    symbol, asset_class = normalize_symbol(request.ticker)
    tracked = symbols_repository.get_symbol(conn, symbol)
    zone = daily_bar_zone(tracked.asset_class if tracked else asset_class)
    start_at = parse_bound(request.from_, "from", zone, end=False)
    end_before = parse_bound(request.to, "to", zone, end=True)
    if start_at >= end_before:
        raise BadRequest(
            f"from ({request.from_}) must not be after to ({request.to})",
            details={"from": request.from_, "to": request.to},
        )
    if tracked is None or not tracked.active:
        # What Polygon answers for a ticker it has no bars of: 200, nothing, no `results`.
        return _encoder.encode(
            AggsResponse(
                ticker=request.ticker,
                adjusted=query.adjusted,
                queryCount=0,
                resultsCount=0,
                status=STATUS_OK,
                request_id=request_id,
            )
        )
    plan = bucketing(multiplier, timespan, tracked.timeframes)
    if plan.base_timeframe not in tracked.timeframes:
        raise NotFound(
            f"{multiplier}/{timespan} bars of {request.ticker} are built from "
            f"{plan.base_timeframe} bars, and {tracked.symbol} is not tracked at "
            f"{plan.base_timeframe} (its timeframes: {', '.join(tracked.timeframes)}); an admin "
            f"can add it with PUT /api/v1/admin/symbols/{tracked.symbol}",
            details={"tracked_timeframes": list(tracked.timeframes)},
        )
    if not query.adjusted:
        refuse_unknown_traded_prices(conn, [tracked.symbol], plan.base_timeframe)

    descending = query.sort == "desc"
    cursor_query = CursorQuery(
        tracked.symbol,
        f"{multiplier}/{timespan}/{query.sort}/{request.from_}/{request.to}",
        None,
        None,
        True,
        "asc",
        query.adjusted,
    )
    secret = get_settings().cursor_secret.encode()
    after, before = _FAR_PAST, _FAR_FUTURE
    if query.cursor is not None:
        # The cursor holds the time of the outermost stored bar of the last bucket served
        # (its last bar going forward, its first going back): the next page starts past it,
        # at the next bucket's first bar.
        edge = decode_cursor(query.cursor, cursor_query, secret=secret).time
        if descending:
            before = edge
        else:
            after = edge

    if plan.kind is None:
        rows = repository.list_stored_aggs(
            conn,
            symbol=tracked.symbol,
            timeframe=plan.base_timeframe,
            start_at=start_at,
            end_before=end_before,
            after=after,
            before=before,
            descending=descending,
            limit=query.limit + 1,
            adjusted=query.adjusted,
        )
    else:
        rows = repository.list_resampled_aggs(
            conn,
            symbol=tracked.symbol,
            base_timeframe=plan.base_timeframe,
            zone=zone,
            kind=plan.kind,
            step=plan.step,
            start_at=start_at,
            end_before=end_before,
            after=after,
            before=before,
            descending=descending,
            limit=query.limit + 1,
            adjusted=query.adjusted,
        )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    results = [Agg(r.o, r.h, r.l, r.c, r.v, r.t, r.vw, r.n) for r in rows]

    def page(count: int, more: bool) -> bytes:
        served = rows[:count]
        next_url = None
        if more and served:
            edge = served[-1].first_time if descending else served[-1].last_time
            cursor = encode_cursor(cursor_query, Position(tracked.symbol, edge), secret=secret)
            next_url = _next_url(origin, request, query, cursor)
        return _encoder.encode(
            AggsResponse(
                ticker=request.ticker,
                adjusted=query.adjusted,
                queryCount=sum(r.base_bars for r in served),
                resultsCount=count,
                status=STATUS_OK,
                request_id=request_id,
                results=results[:count] if count else msgspec.UNSET,
                next_url=next_url,
            )
        )

    body = page(len(results), more)
    count = len(results)
    # Lambda's 6 MB bound: shrink the page in proportion until it fits, and page on.
    while wire_size(body) > max_response_bytes and count > 1:
        count = max(1, int(count * max_response_bytes / wire_size(body) * 0.98))
        body = page(count, True)
    return body


def _next_url(origin: str, request: AggsRequest, query: AggsQuery, cursor: str) -> str:
    """The next page's address. Its path is the route's own, without any API Gateway stage:
    the official client joins the path and query of `next_url` to its own base URL (which
    holds the stage), ignoring the host."""
    path = "/".join(
        (
            "/v2/aggs/ticker",
            quote(request.ticker, safe=":"),
            "range",
            request.multiplier,
            request.timespan,
            quote(request.from_, safe=""),
            quote(request.to, safe=""),
        )
    )
    params = {
        "cursor": cursor,
        "adjusted": "true" if query.adjusted else "false",
        "sort": query.sort,
        "limit": str(query.limit),
    }
    return f"{origin}{path}?{urlencode(params)}"


def grouped_daily(
    conn: Connection, raw_date: str, query: GroupedQuery, *, crypto: bool, request_id: str
) -> GroupedResponse:
    """Every active symbol's daily bar of one market date (New York date for stocks, UTC
    date for crypto)."""
    day = _parse_date(raw_date, "date")
    rows = repository.list_grouped_daily(conn, day=day, crypto=crypto, adjusted=query.adjusted)
    if not query.adjusted and rows:
        refuse_unknown_traded_prices(conn, [r.symbol for r in rows], DAILY)
    results = [
        GroupedAgg(
            r.o, r.h, r.l, r.c, r.v, r.t, r.vw, r.n, T=provider_ticker(r.symbol, r.asset_class)
        )
        for r in rows
    ]
    return GroupedResponse(
        adjusted=query.adjusted,
        queryCount=len(results),
        resultsCount=len(results),
        status=STATUS_OK,
        request_id=request_id,
        results=results if results else msgspec.UNSET,
    )


def _parse_date(raw: str, name: str) -> date:
    if _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise BadRequest(
        f"{name} must be a date (YYYY-MM-DD); got {raw[:40]!r}", details={name: raw[:40]}
    )


def splits_page(
    conn: Connection,
    query: SplitsQuery,
    *,
    request_id: str,
    origin: str,
    params: Mapping[str, str],
) -> SplitsResponse:
    """One page of the splits the warehouse knows, filtered and ordered as Polygon's
    `/v3/reference/splits`. `params` is the query string as sent; `next_url` repeats it."""
    symbol = normalize_symbol(query.ticker)[0] if query.ticker else None
    date_from, date_to = date.min, date.max
    if query.execution_date is not None:
        date_from = date_to = query.execution_date
    if query.execution_date_gte is not None:
        date_from = max(date_from, query.execution_date_gte)
    if query.execution_date_gt is not None and query.execution_date_gt < date.max:
        date_from = max(date_from, query.execution_date_gt + timedelta(days=1))
    if query.execution_date_lte is not None:
        date_to = min(date_to, query.execution_date_lte)
    if query.execution_date_lt is not None and query.execution_date_lt > date.min:
        date_to = min(date_to, query.execution_date_lt - timedelta(days=1))

    # The splits table is small: pages go by offset, carried in a cursor signed for these
    # filters and this order (an instant that many microseconds after the epoch).
    filters = msgspec.json.encode(msgspec.structs.replace(query, limit=1, cursor=None))
    cursor_query = CursorQuery("splits", hashlib.sha256(filters).hexdigest()[:32], None, None, True)
    secret = get_settings().cursor_secret.encode()
    offset = 0
    if query.cursor is not None:
        edge = decode_cursor(query.cursor, cursor_query, secret=secret).time
        offset = (edge - _EPOCH) // timedelta(microseconds=1)
    rows = repository.list_splits(
        conn,
        symbol=symbol,
        date_from=date_from,
        date_to=date_to,
        reverse=query.reverse_split,
        by_ticker=query.sort == "ticker",
        descending=query.order == "desc",
        offset=max(offset, 0),
        limit=query.limit + 1,
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    results = [
        Split(
            id=_split_id(r.symbol, r.execution_date),
            ticker=r.symbol,
            execution_date=r.execution_date.isoformat(),
            split_from=r.split_from,
            split_to=r.split_to,
        )
        for r in rows
    ]
    next_url = None
    if more:
        next_offset = _EPOCH + timedelta(microseconds=offset + len(rows))
        cursor = encode_cursor(cursor_query, Position("splits", next_offset), secret=secret)
        kept = {name: value for name, value in params.items() if name != "cursor"}
        next_url = f"{origin}/v3/reference/splits?{urlencode({**kept, 'cursor': cursor})}"
    return SplitsResponse(
        status=STATUS_OK, request_id=request_id, results=results, next_url=next_url
    )


def _split_id(symbol: str, execution_date: date) -> str:
    """A stable id for a split: the same split always has the same one."""
    return "E" + hashlib.sha256(f"{symbol}|{execution_date}".encode()).hexdigest()[:32]
