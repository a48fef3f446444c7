"""Tracked symbols: add (checked against the provider), list, inspect with statistics, change,
deactivate, and backfill on request. No HTTP here; the routes translate.

Like every service, these work on the connection their caller gives them and open none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import NotFound, ServiceUnavailable, Unprocessable
from chalicelib.market.tickers import normalize_symbol, provider_ticker
from chalicelib.market.timeframes import TIMEFRAMES, Timeframe
from chalicelib.marketdata.gaps import daily_bar_zone, missing_sessions
from chalicelib.symbols import repository
from chalicelib.symbols.models import (
    AddSymbolRequest,
    DateRange,
    SymbolDetail,
    SymbolOut,
    TimeframeStats,
    TrackedSymbol,
    UpdateSymbolRequest,
)

if TYPE_CHECKING:
    from chalicelib.backfill.models import BackfillResult
    from chalicelib.ops.models import SymbolBackfill

Connection = db.Connection
TickerCheck = Callable[[str, str], None]
CHECK_RETRIES = 1
CHECK_MAX_BACKOFF_SECONDS = 1.0
"""Raises when the provider does not know (symbol, asset_class); see `check_ticker_exists`."""


def check_ticker_exists(symbol: str, asset_class: str) -> None:
    """Ask Polygon's ticker details whether the ticker exists.

    Unknown → Unprocessable (422). Provider unreachable, or refusing our key → ServiceUnavailable
    (503), with a message that names the cause and never the key.
    """
    # Imported here: the HTTP client is only needed when an operator adds a symbol.
    from chalicelib.polygon import (
        PolygonAuthError,
        PolygonClient,
        PolygonError,
        PolygonNotAuthorized,
    )

    ticker = provider_ticker(symbol, asset_class)
    skip_hint = "set SYMBOL_CHECK_ON_ADD=false to add symbols without the check"
    try:
        # An operator is waiting, behind API Gateway's 29-second limit: one retry, short waits.
        with PolygonClient.from_settings(
            get_settings(), max_retries=CHECK_RETRIES, max_backoff=CHECK_MAX_BACKOFF_SECONDS
        ) as client:
            exists = client.ticker_exists(ticker)
    except PolygonAuthError:
        raise ServiceUnavailable(
            "cannot check the ticker: the market data provider rejected the configured API "
            f"key; fix POLYGON_API_KEY or {skip_hint}"
        ) from None
    except PolygonNotAuthorized:
        raise ServiceUnavailable(
            "cannot check the ticker: the market data provider's plan does not allow ticker "
            f"lookups with the configured key; {skip_hint}"
        ) from None
    except PolygonError:
        raise ServiceUnavailable(
            f"cannot check the ticker: the market data provider is unreachable; try again "
            f"later or {skip_hint}"
        ) from None
    if not exists:
        raise Unprocessable(
            f"{symbol} is not a ticker the market data provider knows ({ticker}); check the "
            "spelling and the asset class",
            details={"symbol": symbol, "asset_class": asset_class, "provider_ticker": ticker},
        )


def add_symbol(
    conn: Connection,
    request: AddSymbolRequest,
    *,
    check_ticker: TickerCheck | None = check_ticker_exists,
) -> TrackedSymbol:
    """Normalise, refuse a duplicate, check the provider, then insert. Give it a connection
    outside any transaction (each statement then commits on its own), so a slow provider holds
    no transaction open. The insert still turns a race into Conflict."""
    symbol, asset_class = normalize_symbol(request.symbol, request.asset_class)
    timeframes = _ordered_timeframes(request.timeframes)
    if repository.get_symbol(conn, symbol) is not None:
        # Let the insert raise the one Conflict message.
        check_ticker = None
    if check_ticker is not None and get_settings().symbol_check_on_add:
        check_ticker(symbol, asset_class)
    return repository.insert_symbol(
        conn, symbol=symbol, asset_class=asset_class, timeframes=timeframes
    )


def list_symbols(
    conn: Connection, *, active: bool | None = None, asset_class: str | None = None
) -> list[SymbolOut]:
    rows = repository.list_symbols(conn, active=active, asset_class=asset_class)
    return [SymbolOut.from_row(row) for row in rows]


def resolve_symbol(conn: Connection, raw: str) -> TrackedSymbol:
    """The tracked symbol a path parameter names, by any accepted spelling; NotFound if none."""
    symbol, _ = normalize_symbol(raw)
    row = repository.get_symbol(conn, symbol)
    if row is None:
        raise NotFound(f"{symbol} is not a tracked symbol", details={"symbol": symbol})
    return row


def get_symbol_detail(conn: Connection, raw: str) -> SymbolDetail:
    row = resolve_symbol(conn, raw)
    counts = {c.timeframe: c for c in repository.get_timeframe_counts(conn, row.symbol)}
    stats: dict[str, TimeframeStats] = {}
    for timeframe in _ordered_timeframes([*row.timeframes, *counts]):
        count = counts.get(timeframe)
        missing: list[date] | None = None
        if timeframe == "1d":
            days = repository.get_daily_bar_days(
                conn, row.symbol, zone=daily_bar_zone(row.asset_class)
            )
            missing = missing_sessions(row.asset_class, days)
        gaps = None if missing is None else len(missing)
        if count is None:
            stats[timeframe] = TimeframeStats(0, DateRange(None, None), None, gaps, missing)
            continue
        stats[timeframe] = TimeframeStats(
            record_count=count.record_count,
            date_range=DateRange(count.first, count.last),
            validation_rate=round(count.validated_count / count.record_count, 6),
            gaps_detected=gaps,
            missing_sessions=missing,
        )
    base = SymbolOut.from_row(row)
    return SymbolDetail(**{f: getattr(base, f) for f in base.__struct_fields__}, stats=stats)


def update_symbol(conn: Connection, raw: str, request: UpdateSymbolRequest) -> SymbolOut:
    current = resolve_symbol(conn, raw)
    asset_class = request.asset_class
    if asset_class is not None:
        # The same rule as on add: a crypto pair cannot become a stock and back.
        normalize_symbol(current.symbol, asset_class)
    timeframes = _ordered_timeframes(request.timeframes) if request.timeframes else None
    row = repository.update_symbol(
        conn,
        current.symbol,
        active=request.active,
        asset_class=asset_class,
        timeframes=timeframes,
    )
    if row is None:  # deleted between the two statements
        raise NotFound(f"{current.symbol} is not a tracked symbol")
    return SymbolOut.from_row(row)


def deactivate_symbol(conn: Connection, raw: str) -> SymbolOut:
    current = resolve_symbol(conn, raw)
    row = repository.deactivate_symbol(conn, current.symbol)
    if row is None:
        raise NotFound(f"{current.symbol} is not a tracked symbol")
    return SymbolOut.from_row(row)


class BackfillOutcome(msgspec.Struct, frozen=True):
    """What `POST …/{symbol}/backfill` did: ran it here (`results`) or queued it for the SQS
    worker (`queued`, one message per timeframe)."""

    symbol: str
    results: list[BackfillResult] = msgspec.field(default_factory=list)
    queued: list[SymbolBackfill] = msgspec.field(default_factory=list)


def backfill_symbol(tracked: TrackedSymbol, *, request_id: str | None = None) -> BackfillOutcome:
    """Backfill one tracked symbol (from `resolve_symbol`) now, every timeframe.

    Locally (and in tests) the backfill runs in this request, as the backfill job does (it
    opens its own unit of work per timeframe). In Lambda it would outlive API Gateway's
    29-second limit, so there each timeframe is queued for the backfill worker.
    """
    if get_settings().in_lambda:
        return BackfillOutcome(
            tracked.symbol, queued=queue_backfill(tracked, request_id=request_id or uuid4().hex)
        )
    from chalicelib.backfill.service import run_backfill

    return BackfillOutcome(tracked.symbol, results=run_backfill(symbols=[tracked.symbol]))


def queue_backfill(tracked: TrackedSymbol, *, request_id: str) -> list[SymbolBackfill]:
    """One message per timeframe, up to today, on the backfill queue; the worker runs them
    with the same code as the CLI. A message the queue refuses is a 503, never a silent drop."""
    from chalicelib.ops.models import SymbolBackfill, encode_message
    from chalicelib.ops.queue import send_bodies

    window = datetime.now(UTC).date()
    messages = [
        # The table's check constraint admits only known timeframes.
        SymbolBackfill(
            symbol=tracked.symbol,
            timeframe=cast(Timeframe, timeframe),
            window=window,
            request_id=request_id,
        )
        for timeframe in tracked.timeframes
    ]
    report = send_bodies(
        get_settings().backfill_queue_name, [encode_message(message) for message in messages]
    )
    if report.failed:
        raise ServiceUnavailable(
            f"could not queue the backfill of {tracked.symbol}: the queue refused "
            f"{len(report.failed)} of {len(messages)} messages; try again"
        )
    return messages


def _ordered_timeframes(timeframes: list[Any]) -> list[str]:
    """Unique timeframes, smallest bar first, so stored arrays compare and read the same."""
    wanted = set(timeframes)
    return [name for name in TIMEFRAMES if name in wanted]
