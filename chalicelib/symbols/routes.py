"""Admin endpoints for tracked symbols: /api/v1/admin/symbols[/{symbol}[/backfill]]."""

from __future__ import annotations

from datetime import date

import msgspec
from chalice import Blueprint, Response

from chalicelib import db
from chalicelib.http import json_response
from chalicelib.marketdata.models import UtcDateTime
from chalicelib.routing import route
from chalicelib.symbols import service
from chalicelib.symbols.models import (
    AddSymbolRequest,
    SymbolDetail,
    SymbolList,
    SymbolListQuery,
    SymbolOut,
    UpdateSymbolRequest,
)

bp = Blueprint(__name__)

TAG = "Admin: symbols"
SYMBOL_PARAMETER = {"symbol": "Any accepted spelling: `AAPL`, `btc`, `BTC-USD`, `X:BTCUSD`."}


class BackfillResultOut(msgspec.Struct, frozen=True):
    """One (symbol, timeframe) backfill as it finished."""

    symbol: str
    timeframe: str
    status: str
    bars_written: int
    provider_requests: int
    error: str | None
    started_at: UtcDateTime
    finished_at: UtcDateTime


class QueuedBackfillOut(msgspec.Struct, frozen=True):
    """One (symbol, timeframe) backfill handed to the backfill worker, up to `window`."""

    timeframe: str
    window: date


class BackfillResponse(msgspec.Struct, frozen=True):
    """The symbol's backfill: one result per timeframe when it ran in the request (200), or one
    queued message per timeframe when it was handed to the backfill worker (202, on AWS)."""

    symbol: str
    results: list[BackfillResultOut]
    queued: list[QueuedBackfillOut]


@route(
    bp,
    "POST",
    "/api/v1/admin/symbols",
    summary="Track a symbol",
    description="The symbol is normalised (`btc-usd` → `BTC`) and, unless "
    "`SYMBOL_CHECK_ON_ADD=false`, checked against the provider's ticker details first.",
    scope="admin",
    tag=TAG,
    body=AddSymbolRequest,
    response=SymbolOut,
    status=201,
    errors=(400, 409, 413, 422),
)
def add_symbol(*, body: AddSymbolRequest) -> Response:
    # Not one transaction: the provider check runs between the duplicate check and the insert.
    with db.connection() as conn:
        row = service.add_symbol(conn, body)
    return json_response(SymbolOut.from_row(row), status=201)


@route(
    bp,
    "GET",
    "/api/v1/admin/symbols",
    summary="List tracked symbols",
    scope="admin",
    tag=TAG,
    query=SymbolListQuery,
    response=SymbolList,
    errors=(400,),
)
def list_symbols(*, query: SymbolListQuery) -> Response:
    symbols = db.read(
        lambda conn: service.list_symbols(conn, active=query.active, asset_class=query.asset_class),
        one_snapshot=False,  # one statement
    )
    return json_response(SymbolList(symbols=symbols, count=len(symbols)))


@route(
    bp,
    "GET",
    "/api/v1/admin/symbols/{symbol}",
    summary="A tracked symbol with statistics per timeframe",
    description="`stats` per timeframe: record_count, date_range, validation_rate "
    "(validated / all) and, for `1d`, gaps_detected (expected sessions with no bar inside "
    "the stored range: NYSE sessions for stocks and ETFs, every UTC day for crypto).",
    scope="admin",
    tag=TAG,
    response=SymbolDetail,
    errors=(400, 404),
    path_parameters=SYMBOL_PARAMETER,
)
def get_symbol(symbol: str) -> Response:
    detail = db.read(lambda conn: service.get_symbol_detail(conn, symbol))
    return json_response(detail)


@route(
    bp,
    "PUT",
    "/api/v1/admin/symbols/{symbol}",
    summary="Change or reactivate a tracked symbol",
    scope="admin",
    tag=TAG,
    body=UpdateSymbolRequest,
    response=SymbolOut,
    errors=(400, 404, 413),
    path_parameters=SYMBOL_PARAMETER,
)
def update_symbol(symbol: str, *, body: UpdateSymbolRequest) -> Response:
    updated = db.write(lambda conn: service.update_symbol(conn, symbol, body))
    return json_response(updated)


@route(
    bp,
    "DELETE",
    "/api/v1/admin/symbols/{symbol}",
    summary="Deactivate a symbol (its bars and history are kept)",
    scope="admin",
    tag=TAG,
    response=SymbolOut,
    errors=(400, 404),
    path_parameters=SYMBOL_PARAMETER,
)
def deactivate_symbol(symbol: str) -> Response:
    row = db.write(lambda conn: service.deactivate_symbol(conn, symbol))
    return json_response(row)


@route(
    bp,
    "POST",
    "/api/v1/admin/symbols/{symbol}/backfill",
    summary="Backfill a symbol now",
    description="Runs the backfill of every timeframe of the symbol and returns one result "
    "per timeframe (200). A failed timeframe is reported in its result, not as an error "
    "status. On AWS, where a backfill can outlive API Gateway's time limit, each timeframe is "
    "queued for the backfill worker instead and the answer is 202 with `queued`.",
    scope="admin",
    tag=TAG,
    response=BackfillResponse,
    errors=(400, 404),
    path_parameters=SYMBOL_PARAMETER,
)
def backfill_symbol(symbol: str) -> Response:
    request_id = bp.current_request.context.get("requestId")
    tracked = db.read(lambda conn: service.resolve_symbol(conn, symbol), one_snapshot=False)
    outcome = service.backfill_symbol(tracked, request_id=str(request_id) if request_id else None)
    runs = [
        msgspec.convert(result, BackfillResultOut, from_attributes=True)
        for result in outcome.results
    ]
    queued = [QueuedBackfillOut(m.timeframe, m.window) for m in outcome.queued]
    return json_response(
        BackfillResponse(symbol=outcome.symbol, results=runs, queued=queued),
        status=202 if queued else 200,
    )
