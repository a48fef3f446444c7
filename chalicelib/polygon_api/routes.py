"""Polygon-compatible read endpoints (`read` scope): aggregates of any size, grouped daily
bars and splits, in Polygon's paths and shapes so Polygon's official client reads from the
warehouse by changing its base URL and key. Errors on these paths take Polygon's error shape
(`polygon_error_shape`, a middleware, so refusals of the key layer are restated too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib import db
from chalicelib.http import (
    JSON_HEADERS,
    json_response,
    request_id_of,
    restate_framework_error,
)
from chalicelib.polygon_api import service
from chalicelib.polygon_api.models import (
    AggsQuery,
    AggsResponse,
    GroupedQuery,
    GroupedResponse,
    PolygonError,
    SplitsQuery,
    SplitsResponse,
)
from chalicelib.routing import route

bp = Blueprint(__name__)

TAG = "Polygon-compatible"
AGGS_PATH = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}"
STOCKS_GROUPED_PATH = "/v2/aggs/grouped/locale/us/market/stocks/{date}"
CRYPTO_GROUPED_PATH = "/v2/aggs/grouped/locale/global/market/crypto/{date}"
SPLITS_PATH = "/v3/reference/splits"
POLYGON_PATH_PREFIXES = ("/v2/aggs/", "/v3/reference/")
ERROR_NOTE = (
    ' Errors have Polygon\'s body `{"status": "ERROR", "request_id", "error"}` (not the '
    "API's own error body), with the same statuses."
)


def _request_id(request: Request) -> str:
    return request_id_of(request) or uuid.uuid4().hex


def _origin(request: Request) -> str:
    """scheme://host the client called. `next_url` starts with it; the official client keeps
    only its path and query."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = headers.get("host", "localhost")
    return f"{scheme}://{host}"


def _json(body: bytes) -> Response:
    return Response(body=body.decode(), status_code=200, headers=dict(JSON_HEADERS))


@route(
    bp,
    "GET",
    AGGS_PATH,
    summary="Aggregate bars of any size, as Polygon's /v2/aggs/ticker/…/range/…",
    description="Bars of `multiplier` × `timespan` between `from` and `to`, both inclusive: "
    "dates (YYYY-MM-DD, the market's day: New York for stocks, UTC for crypto) or Unix "
    "milliseconds. A size the symbol tracks is read as stored; other minute and hour sizes "
    "are resampled from `1m` bars, day and larger from `1d` bars (open first, high max, low "
    "min, close last, volume and trades summed, vwap volume-weighted), on New York time for "
    "stocks and UTC for crypto, weeks from Sunday. `t` is the window's start in epoch ms. Only "
    "validated bars are served. An untracked ticker answers 200 with `resultsCount` 0 and no "
    "`results`, as Polygon does; a tracked one whose base timeframe is not tracked is a 404. "
    "Follow `next_url` for more pages (its path and query, joined to your base URL)." + ERROR_NOTE,
    scope="read",
    tag=TAG,
    error_body=PolygonError,
    query=AggsQuery,
    response=AggsResponse,
    errors=(400, 404),
    path_parameters={
        "ticker": "Polygon's spelling: `AAPL`, `X:BTCUSD` (other accepted spellings work too).",
        "multiplier": "Buckets of this many timespans: 1 to 1,440 minutes, 1 to 24 hours, "
        "1 to 1,000 of the others.",
        "timespan": "minute, hour, day, week, month, quarter or year (`second` is not served).",
        "from": "First day (YYYY-MM-DD) or instant (Unix ms), inclusive.",
        "to": "Last day (YYYY-MM-DD) or instant (Unix ms), inclusive; not before `from`.",
    },
)
def aggs(*, query: AggsQuery, **path: str) -> Response:
    request = bp.current_request
    aggs_request = service.AggsRequest(
        path["ticker"], path["multiplier"], path["timespan"], path["from"], path["to"]
    )
    request_id = _request_id(request)
    origin = _origin(request)
    body = db.read(
        lambda conn: service.aggs_page(
            conn, aggs_request, query, request_id=request_id, origin=origin
        )
    )
    return _json(body)


def _grouped(raw_date: str, query: GroupedQuery, *, crypto: bool) -> Response:
    request = bp.current_request
    request_id = _request_id(request)
    page = db.read(
        lambda conn: service.grouped_daily(
            conn, raw_date, query, crypto=crypto, request_id=request_id
        )
    )
    return json_response(page)


_GROUPED_DESCRIPTION = (
    "One bar per active symbol tracked at `1d` whose daily bar falls on `date` (YYYY-MM-DD; "
    "the New York date for stocks and ETFs, the UTC date for crypto), each with its ticker in "
    "`T`. A day with no bars answers 200 with `resultsCount` 0 and no `results`." + ERROR_NOTE
)


@route(
    bp,
    "GET",
    STOCKS_GROUPED_PATH,
    summary="Every tracked stock's and ETF's daily bar of one day",
    description=_GROUPED_DESCRIPTION,
    scope="read",
    tag=TAG,
    error_body=PolygonError,
    query=GroupedQuery,
    response=GroupedResponse,
    errors=(400,),
    path_parameters={"date": "The market date, YYYY-MM-DD."},
)
def grouped_stocks(date: str, *, query: GroupedQuery) -> Response:
    return _grouped(date, query, crypto=False)


@route(
    bp,
    "GET",
    CRYPTO_GROUPED_PATH,
    summary="Every tracked crypto pair's daily bar of one UTC day",
    description=_GROUPED_DESCRIPTION,
    scope="read",
    tag=TAG,
    error_body=PolygonError,
    query=GroupedQuery,
    response=GroupedResponse,
    errors=(400,),
    path_parameters={"date": "The UTC date, YYYY-MM-DD."},
)
def grouped_crypto(date: str, *, query: GroupedQuery) -> Response:
    return _grouped(date, query, crypto=True)


@route(
    bp,
    "GET",
    SPLITS_PATH,
    summary="Stock splits the warehouse knows, as Polygon's /v3/reference/splits",
    description="Filtered by ticker, execution date (exact or a range) and direction; ordered "
    "by execution date (default) or ticker; `next_url` while more pages exist." + ERROR_NOTE,
    scope="read",
    tag=TAG,
    error_body=PolygonError,
    query=SplitsQuery,
    response=SplitsResponse,
    errors=(400,),
)
def splits(*, query: SplitsQuery) -> Response:
    request = bp.current_request
    params = dict(request.query_params or {})
    request_id = _request_id(request)
    origin = _origin(request)
    page = db.read(
        lambda conn: service.splits_page(
            conn, query, request_id=request_id, origin=origin, params=params
        )
    )
    return json_response(page)


def is_polygon_route(route: str) -> bool:
    return route.startswith(POLYGON_PATH_PREFIXES)


def polygon_error_shape(event: Request, get_response: Callable[[Request], Response]) -> Any:
    """On the Polygon-compatible routes, restate any error in the API's one body as Polygon's
    `{"status": "ERROR", "request_id", "error"}`, keeping the status and headers (Retry-After):
    the official client then fails as it fails against Polygon."""
    # Chalice's own refusals (405, 415) first become the one error body, then Polygon's.
    response = restate_framework_error(get_response(event))
    if response.status_code < 400 or event is None or not is_polygon_route(event.path):
        return response
    body = response.body
    if isinstance(body, str):
        try:
            body = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return response
    message = str(body["error"].get("message", "error"))
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return json_response(
        PolygonError(status="ERROR", request_id=_request_id(event), error=message),
        status=response.status_code,
        headers=headers,
    )
