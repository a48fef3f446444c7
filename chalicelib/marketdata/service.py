"""Market data reads: pages of bars under Lambda's response limit, the symbol list, and the
pipeline status. No HTTP here; the routes translate."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import BadRequest
from chalicelib.marketdata import repository
from chalicelib.marketdata.cursor import CursorQuery, decode_cursor, encode_cursor
from chalicelib.marketdata.models import (
    MAX_MINUTE_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    BackfillRunOut,
    Bar,
    HistoricalPage,
    HistoricalQuery,
    PipelineStatus,
    StalestSymbolOut,
    SymbolCounts,
    SymbolSummary,
    SymbolSummaryList,
)
from chalicelib.symbols.service import resolve_symbol

Connection = db.Connection

# Lambda refuses a synchronous response over 6 MB, counted on the proxy envelope in which the
# JSON body travels as a string: every `"` and `\` in it is escaped to two bytes. The headroom
# covers the envelope's other fields and headers.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
ENVELOPE_HEADROOM = 16 * 1024
MAX_RESPONSE_BYTES = LAMBDA_RESPONSE_LIMIT - ENVELOPE_HEADROOM

_FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


def wire_size(body: bytes) -> int:
    """Bytes `body` occupies inside the Lambda proxy response, after JSON string escaping."""
    return len(body) + body.count(b'"') + body.count(b"\\")


def historical_page(
    conn: Connection,
    raw_symbol: str,
    query: HistoricalQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """One page of bars as encoded JSON, oldest first, never over `max_response_bytes` on the
    wire: a page cut short by size carries a next_cursor like one cut by `limit`."""
    symbol = resolve_symbol(conn, raw_symbol).symbol
    _check_query(query)
    cursor_query = CursorQuery(
        symbol, query.timeframe, query.start, query.end, query.validated_only
    )
    secret = get_settings().cursor_secret.encode()
    after = _FAR_PAST
    if query.cursor is not None:
        after = decode_cursor(query.cursor, cursor_query, secret=secret)

    # One extra row tells whether another page exists without a second query.
    rows = repository.get_bars_page(
        conn,
        symbol=symbol,
        timeframe=query.timeframe,
        start_at=_day_start(query.start) if query.start else _FAR_PAST,
        end_before=_day_start(query.end + timedelta(days=1)) if query.end else _FAR_FUTURE,
        after=after,
        validated_only=query.validated_only,
        limit=query.limit + 1,
    )
    bars = rows[: query.limit]
    more = len(rows) > query.limit

    def encode(page_bars: list[Bar], has_more: bool) -> bytes:
        next_cursor = (
            encode_cursor(cursor_query, page_bars[-1].time, secret=secret)
            if has_more and page_bars
            else None
        )
        page = HistoricalPage(
            symbol=symbol,
            timeframe=query.timeframe,
            start=query.start,
            end=query.end,
            count=len(page_bars),
            bars=page_bars,
            next_cursor=next_cursor,
        )
        return _encoder.encode(page)

    body = encode(bars, more)
    while wire_size(body) > max_response_bytes and len(bars) > 1:
        # Bars of one query are close in size, so scaling by the overshoot lands near the
        # largest page that fits; the margin makes a second pass rare.
        keep = int(len(bars) * max_response_bytes / wire_size(body) * 0.98)
        bars = bars[: max(1, min(keep, len(bars) - 1))]
        body = encode(bars, True)
    return body


def list_active_symbols(conn: Connection) -> SymbolSummaryList:
    rows = repository.list_active_symbol_ranges(conn)
    symbols = [
        SymbolSummary(
            symbol=row.symbol,
            asset_class=row.asset_class,
            timeframes=row.timeframes,
            first_bar=row.first_bar,
            last_bar=row.last_bar,
        )
        for row in rows
    ]
    return SymbolSummaryList(symbols=symbols, count=len(symbols))


def pipeline_status(conn: Connection) -> PipelineStatus:
    by_status = repository.count_active_symbols_by_status(conn)
    stalest = repository.get_stalest_symbol(conn)
    run = repository.get_last_run(conn)
    total_bars, validated_bars = repository.count_bars(conn)
    return PipelineStatus(
        symbols=SymbolCounts(
            total=sum(by_status.values()),
            by_backfill_status=by_status,
            timeframes_by_backfill_status=repository.count_active_timeframes_by_status(conn),
        ),
        stalest_symbol=(
            StalestSymbolOut(stalest.symbol, stalest.backfill_status, stalest.last_backfill)
            if stalest
            else None
        ),
        last_run=(
            BackfillRunOut(
                id=run.id,
                symbol=run.symbol,
                timeframe=run.timeframe,
                status=run.status,
                started_at=run.started_at,
                finished_at=run.finished_at,
                bars_written=run.bars_written,
                provider_requests=run.provider_requests,
                error=run.error,
            )
            if run
            else None
        ),
        bars=total_bars,
        validated_bars=validated_bars,
        validation_rate=round(validated_bars / total_bars, 6) if total_bars else None,
    )


def _check_query(query: HistoricalQuery) -> None:
    if query.start and query.end and query.start > query.end:
        raise BadRequest(
            "start must be on or before end",
            details={"start": query.start.isoformat(), "end": query.end.isoformat()},
        )
    maximum = MAX_MINUTE_PAGE_LIMIT if query.timeframe == "1m" else MAX_PAGE_LIMIT
    if query.limit > maximum:
        raise BadRequest(
            f"limit must be at most {maximum} for timeframe {query.timeframe}",
            details={"limit": query.limit},
        )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
