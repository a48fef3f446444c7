"""Read endpoints (`read` scope): /api/v1/symbols, /api/v1/symbols/{symbol},
/api/v1/historical/{symbol}, /api/v1/bars, /api/v1/latest, /api/v1/status."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from chalice import Blueprint, Response

from chalicelib import db
from chalicelib.http import JSON_HEADERS, json_response, negotiate
from chalicelib.marketdata import service
from chalicelib.marketdata.models import (
    BarQuery,
    BarsPage,
    BarsQuery,
    HistoricalPage,
    HistoricalQuery,
    LatestBars,
    LatestQuery,
    PipelineStatus,
    SymbolSummaryList,
)
from chalicelib.marketdata.service import CsvPage
from chalicelib.routing import route
from chalicelib.symbols.models import SymbolSummaryDetail

bp = Blueprint(__name__)

TAG = "Market data"
JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
ADJUSTED_HEADER = "Mdw-Adjusted"


@route(
    bp,
    "GET",
    "/api/v1/symbols",
    summary="Active symbols with their timeframes and first/last bar",
    scope="read",
    tag=TAG,
    response=SymbolSummaryList,
)
def list_symbols() -> Response:
    symbols = db.read(service.list_active_symbols)
    return json_response(symbols)


@route(
    bp,
    "GET",
    "/api/v1/symbols/{symbol}",
    summary="An active symbol with each timeframe's backfill and statistics",
    description="The symbol as `/api/v1/symbols` lists it, with `stats` per timeframe: bar "
    "count, first and last bar, validation rate, and for `1d` the expected sessions inside the "
    "stored range that have no bar (`gaps_detected`, `missing_sessions`). 404 for a symbol "
    "that is not tracked or not active.",
    scope="read",
    tag=TAG,
    response=SymbolSummaryDetail,
    errors=(404,),
    path_parameters={"symbol": "Any accepted spelling: `AAPL`, `btc`, `BTC-USD`, `X:BTCUSD`."},
)
def show_symbol(symbol: str) -> Response:
    detail = db.read(lambda conn: service.get_active_symbol(conn, symbol))
    return json_response(detail)


@route(
    bp,
    "GET",
    "/api/v1/historical/{symbol}",
    summary="Bars of one symbol and timeframe, oldest or newest first, a page at a time",
    description="`start` and `end` are both inclusive: a date (YYYY-MM-DD) is the whole UTC "
    "day, an RFC 3339 datetime with a zone or epoch milliseconds is that instant. "
    "`sort=desc` serves newest first, so `sort=desc&limit=N` is the newest N bars. A page "
    "holds at most `limit` bars and never more than fits in 6 MB; while `next_cursor` is not "
    "null, ask again with `cursor=<next_cursor>` and the same other parameters (the cursor "
    "keeps the sort order). Bars added while paging never shift a page. A bound that is none "
    "of the three forms, or a start after the end, is a 400. An unknown `timeframe` is a 400 "
    "listing the allowed ones. A first page "
    "with no bars is a 404, not an empty page, when the symbol is not tracked at that "
    "timeframe (the message and `details.tracked_timeframes` name the tracked ones) or when "
    "its first backfill has not completed yet (`details.backfill_status`); an empty 200 "
    "means nothing traded in the range. Prices are split-adjusted unless `adjusted=false` "
    "(`adjusted` in the body, the `Mdw-Adjusted` header on CSV, says which); `adjusted=false` "
    "is a 409 while the unit's bars are still the split-adjusted ones stored before traded "
    "prices were kept, until its next backfill.",
    scope="read",
    tag=TAG,
    query=HistoricalQuery,
    response=HistoricalPage,
    errors=(400, 404, 406, 409),
    serves_csv=True,
    path_parameters={"symbol": "Any accepted spelling: `AAPL`, `btc`, `BTC-USD`, `X:BTCUSD`."},
)
def historical(symbol: str, *, query: HistoricalQuery) -> Response:
    # One snapshot for the page: the extra row that decides next_cursor sees the same data.
    if _wants_csv(query):
        page = db.read(lambda conn: service.historical_csv(conn, symbol, query))
        return _csv_response(page, adjusted=query.adjusted)
    body = db.read(lambda conn: service.historical_page(conn, symbol, query))
    return Response(body=body.decode(), status_code=200, headers=dict(JSON_HEADERS))


@route(
    bp,
    "GET",
    "/api/v1/bars",
    summary="Bars of up to 100 symbols in one long table, ordered by symbol then time",
    description="Rows carry their symbol (`symbol, time, open, high, low, close, volume, "
    "vwap, trades, validated, flags`) and come ordered by symbol, then by time in `sort` "
    "order. `symbols` is a comma-separated list as for /api/v1/latest: an empty item, a "
    "malformed symbol, a symbol named twice (in any spelling) or more than 100 symbols is a "
    "400 naming the problem, and symbols that are not tracked are a 404 naming them "
    "(`details.unknown_symbols`). `start`, `end`, `sort`, `limit`, `validated_only` and the "
    "cursor work as on /api/v1/historical/{symbol}: a page holds at most `limit` rows and "
    "never more than fits in 6 MB, and `next_cursor` continues it. On the first page, a "
    "symbol not tracked at `timeframe`, or whose first backfill has not completed, is a 404 "
    "that names each such symbol and why (`details`). `adjusted` works as on "
    "/api/v1/historical/{symbol}.",
    scope="read",
    tag=TAG,
    query=BarsQuery,
    response=BarsPage,
    errors=(400, 404, 406, 409),
    serves_csv=True,
)
def bars(*, query: BarsQuery) -> Response:
    if _wants_csv(query):
        page = db.read(lambda conn: service.bars_csv(conn, query))
        return _csv_response(page, adjusted=query.adjusted)
    body = db.read(lambda conn: service.bars_page(conn, query))
    return Response(body=body.decode(), status_code=200, headers=dict(JSON_HEADERS))


@route(
    bp,
    "GET",
    "/api/v1/latest",
    summary="The last bar of each of up to 100 symbols, in one query",
    description="`symbols` is a comma-separated list (any accepted spelling, each symbol at "
    "most once, at most 100); the answer lists one bar per symbol, ordered by symbol. A list "
    "with an empty item, a malformed symbol, a symbol named twice (also as two spellings of "
    "one symbol, such as `BTC,X:BTCUSD`) or more than 100 symbols is a 400 naming the "
    "problem; symbols that are not tracked are a 404 naming them "
    "(`details.unknown_symbols`). A symbol not tracked at `timeframe`, or whose first "
    "backfill has not completed, is a 404 saying so, as on the historical endpoint; "
    "`adjusted` works as there too.",
    scope="read",
    tag=TAG,
    query=LatestQuery,
    response=LatestBars,
    errors=(400, 404, 409),
)
def latest(*, query: LatestQuery) -> Response:
    return json_response(db.read(lambda conn: service.latest_bars(conn, query)))


@route(
    bp,
    "GET",
    "/api/v1/status",
    summary="Pipeline status: symbols by backfill status, stalest symbol, last run, "
    "validation rate",
    scope="read",
    tag=TAG,
    response=PipelineStatus,
)
def status() -> Response:
    report = db.read(service.pipeline_status)
    return json_response(report)


def _wants_csv(query: BarQuery) -> bool:
    """`format` decides; without it, the Accept header (406 when it accepts neither)."""
    if query.format is not None:
        return query.format == "csv"
    accept = bp.current_request.headers.get("accept")
    return negotiate(accept, (JSON_MEDIA_TYPE, CSV_MEDIA_TYPE)) == CSV_MEDIA_TYPE


def _csv_response(page: CsvPage, *, adjusted: bool) -> Response:
    headers: dict[str, str | list[str]] = {
        "Content-Type": f"{CSV_MEDIA_TYPE}; charset=utf-8; header=present",
        # A CSV body has no room for it: which prices it holds travels beside it.
        ADJUSTED_HEADER: "true" if adjusted else "false",
    }
    if page.next_cursor is not None:
        headers["Link"] = f'<{_next_page_reference(page.next_cursor)}>; rel="next"'
    return Response(body=page.body.decode(), status_code=200, headers=headers)


def _next_page_reference(cursor: str) -> str:
    """The next page as a query-only URI reference: the same parameters with the new cursor.
    Resolved against the request's URL it names the same host, stage and path, whatever
    proxy or API Gateway stage sits in front."""
    params = {**(bp.current_request.query_params or {}), "cursor": cursor}
    return "?" + urlencode(params, quote_via=quote, safe=",:")
