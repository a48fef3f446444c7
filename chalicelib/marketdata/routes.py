"""Read endpoints (`read` scope): /api/v1/symbols, /api/v1/symbols/{symbol},
/api/v1/historical/{symbol}, /api/v1/status."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import db
from chalicelib.http import JSON_HEADERS, json_response
from chalicelib.marketdata import service
from chalicelib.marketdata.models import (
    HistoricalPage,
    HistoricalQuery,
    PipelineStatus,
    SymbolSummaryList,
)
from chalicelib.routing import route
from chalicelib.symbols.models import SymbolSummaryDetail

bp = Blueprint(__name__)

TAG = "Market data"


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
    summary="Bars of one symbol and timeframe, oldest first, a page at a time",
    description="Dates are UTC days, both inclusive. A page holds at most `limit` bars and "
    "never more than fits in 6 MB; while `next_cursor` is not null, ask again with "
    "`cursor=<next_cursor>` and the same other parameters. Bars added while paging never "
    "shift a page. An unknown `timeframe` is a 400 listing the allowed ones. A first page "
    "with no bars is a 404, not an empty page, when the symbol is not tracked at that "
    "timeframe (the message and `details.tracked_timeframes` name the tracked ones) or when "
    "its first backfill has not completed yet (`details.backfill_status`); an empty 200 "
    "means nothing traded in the range.",
    scope="read",
    tag=TAG,
    query=HistoricalQuery,
    response=HistoricalPage,
    errors=(400, 404),
    path_parameters={"symbol": "Any accepted spelling: `AAPL`, `btc`, `BTC-USD`, `X:BTCUSD`."},
)
def historical(symbol: str, *, query: HistoricalQuery) -> Response:
    # One snapshot for the page: the extra row that decides next_cursor sees the same data.
    body = db.read(lambda conn: service.historical_page(conn, symbol, query))
    return Response(body=body.decode(), status_code=200, headers=dict(JSON_HEADERS))


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
