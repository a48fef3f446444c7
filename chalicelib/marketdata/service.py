"""Market data reads: pages of bars under Lambda's response limit, the symbol list, and the
pipeline status. No HTTP here; the routes translate."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import BadRequest, NotFound
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
    TimeframeBackfill,
)
from chalicelib.symbols.models import SymbolSummaryDetail, TrackedSymbol
from chalicelib.symbols.service import get_symbol_detail, resolve_symbol

Connection = db.Connection

# Lambda refuses a synchronous response over 6 MB, counted on the proxy envelope in which the
# JSON body travels as a string: every `"` and `\` in it is escaped to two bytes. The headroom
# covers the envelope's other fields and headers.
# How many of the newest backfill runs /api/v1/status lists.
RECENT_RUNS = 10
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
ENVELOPE_HEADROOM = 16 * 1024
MAX_RESPONSE_BYTES = LAMBDA_RESPONSE_LIMIT - ENVELOPE_HEADROOM

# Every encoded bar starts with its time; two bars meet at `},{"time":`.
_BAR_START = b'{"time":'
_BAR_SEPARATOR = b"}," + _BAR_START
# A cursor's length varies by a few digits with the time it carries.
_CURSOR_SLACK = 64

_FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


def wire_size(body: bytes) -> int:
    """Bytes `body` occupies inside the Lambda proxy response, after JSON string escaping."""
    return len(body) + body.count(b'"') + body.count(b"\\")


# The fewest wire bytes one bar can take (a time is always at least 20 characters, a number
# at least 3), plus its comma: no page holds more bars than the budget divided by this.
_SMALLEST_BAR = Bar(_FAR_PAST, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, True, [])
_MIN_BAR_WIRE_BYTES = wire_size(_encoder.encode(_SMALLEST_BAR)) + 1


def historical_page(
    conn: Connection,
    raw_symbol: str,
    query: HistoricalQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """One page of bars as encoded JSON, oldest first, never over `max_response_bytes` on the
    wire: a page cut short by size carries a next_cursor like one cut by `limit`."""
    tracked = resolve_symbol(conn, raw_symbol)
    symbol = tracked.symbol
    _check_query(query)
    cursor_query = CursorQuery(
        symbol, query.timeframe, query.start, query.end, query.validated_only
    )
    secret = get_settings().cursor_secret.encode()
    after = _FAR_PAST
    if query.cursor is not None:
        after = decode_cursor(query.cursor, cursor_query, secret=secret)

    # One extra row tells whether another page exists without a second query; no more rows
    # are read than could possibly fit in the response.
    fits_at_most = max_response_bytes // _MIN_BAR_WIRE_BYTES + 1
    rows = repository.get_bars_page(
        conn,
        symbol=symbol,
        timeframe=query.timeframe,
        start_at=_day_start(query.start) if query.start else _FAR_PAST,
        end_before=(
            _day_start(query.end + timedelta(days=1))
            if query.end and query.end < date.max
            else _FAR_FUTURE
        ),
        after=after,
        validated_only=query.validated_only,
        limit=min(query.limit, fits_at_most) + 1,
    )
    bars = rows[: query.limit]
    more = len(rows) > query.limit
    if not bars and query.cursor is None:
        _explain_no_bars(conn, tracked, query.timeframe)

    def envelope(count: int, next_after: datetime | None) -> bytes:
        next_cursor = encode_cursor(cursor_query, next_after, secret=secret) if next_after else None
        return _encoder.encode(
            HistoricalPage(
                symbol=symbol,
                timeframe=query.timeframe,
                start=query.start,
                end=query.end,
                count=count,
                bars=[],
                next_cursor=next_cursor,
            )
        )

    # The bars are encoded once, as one array, and spliced into the envelope: re-encoding a
    # page of tens of thousands of bars to trim it would double the cost of the largest pages.
    bars_json = _encoder.encode(bars)
    bars_wire = wire_size(bars_json)
    head = envelope(len(bars), bars[-1].time if more and bars else None)
    if wire_size(head) - len(b"[]") + bars_wire <= max_response_bytes:
        return _splice(head, bars_json)

    # Too large: keep the longest run of whole bars that fits, and continue after the last.
    budget = max_response_bytes - wire_size(head) - _CURSOR_SLACK
    count, prefix = _bars_within(bars_json, bars_wire, budget)
    return _splice(envelope(count, bars[count - 1].time), prefix)


def _splice(envelope: bytes, bars_json: bytes) -> bytes:
    return envelope.replace(b'"bars":[]', b'"bars":' + bars_json, 1)


def _bars_within(bars_json: bytes, bars_wire: int, budget: int) -> tuple[int, bytes]:
    """The longest prefix of the encoded array `bars_json` (`bars_wire` wire bytes) that holds
    whole bars and stays within `budget` wire bytes, closed as an array; at least one bar."""
    # Start near where the budget runs out (bars of one query are close in size), then step
    # back bar by bar until it fits.
    density = bars_wire / len(bars_json)
    end = bars_json.rfind(_BAR_SEPARATOR, 0, int(budget / density))
    while end > 0 and wire_size(bars_json[: end + 1]) + 1 > budget:
        end = bars_json.rfind(_BAR_SEPARATOR, 0, end)
    if end <= 0:
        end = bars_json.find(_BAR_SEPARATOR)
        if end < 0:  # a single bar: it is served whatever its size
            return bars_json.count(_BAR_START), bars_json
    prefix = bars_json[: end + 1] + b"]"
    return prefix.count(_BAR_START), prefix


def list_active_symbols(conn: Connection) -> SymbolSummaryList:
    symbols = _active_summaries(conn)
    return SymbolSummaryList(symbols=symbols, count=len(symbols))


def get_active_symbol(conn: Connection, raw: str) -> SymbolSummaryDetail:
    """One active symbol, by any accepted spelling, with each timeframe's statistics; NotFound
    for a symbol that is not tracked or no longer active."""
    tracked = resolve_symbol(conn, raw)
    summaries = _active_summaries(conn, symbol=tracked.symbol)
    if not summaries:
        raise NotFound(f"{tracked.symbol} is not active", details={"symbol": tracked.symbol})
    summary = summaries[0]
    stats = get_symbol_detail(conn, tracked.symbol).stats
    return SymbolSummaryDetail(
        **{f: getattr(summary, f) for f in summary.__struct_fields__}, stats=stats
    )


def _active_summaries(conn: Connection, *, symbol: str | None = None) -> list[SymbolSummary]:
    backfill: dict[str, dict[str, TimeframeBackfill]] = {}
    for state in repository.list_active_timeframe_backfill(conn, symbol=symbol):
        backfill.setdefault(state.symbol, {})[state.timeframe] = TimeframeBackfill(
            status=state.status, last_backfill=state.last_backfill, last_error=state.last_error
        )
    return [
        SymbolSummary(
            symbol=row.symbol,
            asset_class=row.asset_class,
            timeframes=row.timeframes,
            first_bar=row.first_bar,
            last_bar=row.last_bar,
            backfill=backfill.get(row.symbol, {}),
        )
        for row in repository.list_active_symbol_ranges(conn, symbol=symbol)
    ]


def pipeline_status(conn: Connection) -> PipelineStatus:
    by_status = repository.count_active_symbols_by_status(conn)
    stalest = repository.get_stalest_symbol(conn)
    runs = [
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
        for run in repository.list_recent_runs(conn, limit=RECENT_RUNS)
    ]
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
        last_run=runs[0] if runs else None,
        recent_runs=runs,
        bars=total_bars,
        validated_bars=validated_bars,
        validation_rate=round(validated_bars / total_bars, 6) if total_bars else None,
    )


def _explain_no_bars(conn: Connection, tracked: TrackedSymbol, timeframe: str) -> None:
    """Raise NotFound when a first page is empty because there is nothing to read yet, not
    because nothing traded in the range: an empty 200 would read as "no trading"."""
    readiness = repository.get_timeframe_readiness(conn, tracked.symbol, timeframe)
    if readiness.has_bars:
        return
    details: dict[str, object] = {"symbol": tracked.symbol, "timeframe": timeframe}
    if timeframe not in tracked.timeframes:
        raise NotFound(
            f"{tracked.symbol} is not tracked at {timeframe}; its timeframes are "
            f"{', '.join(tracked.timeframes)} (an admin can add {timeframe} with "
            f"PUT /api/v1/admin/symbols/{tracked.symbol})",
            details={**details, "tracked_timeframes": list(tracked.timeframes)},
        )
    if readiness.last_backfill is None:
        status = readiness.backfill_status or "pending"
        raise NotFound(
            f"{tracked.symbol} has no {timeframe} bars yet: its first backfill has not "
            f"completed (backfill status {status}). Bars arrive with the next scheduled "
            f"backfill; an admin can start one now with "
            f"POST /api/v1/admin/symbols/{tracked.symbol}/backfill",
            details={**details, "backfill_status": status},
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
