"""Market data reads: pages of bars under Lambda's response limit, the symbol list, and the
pipeline status. No HTTP here; the routes translate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.market.tickers import normalize_symbol
from chalicelib.marketdata import repository
from chalicelib.marketdata.bounds import check_order, parse_end, parse_start
from chalicelib.marketdata.cursor import CursorQuery, Position, decode_cursor, encode_cursor
from chalicelib.marketdata.models import (
    MAX_MINUTE_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    MAX_SYMBOLS_PER_REQUEST,
    BackfillRunOut,
    Bar,
    BarQuery,
    BarsPage,
    BarsQuery,
    HistoricalPage,
    HistoricalQuery,
    LatestBars,
    LatestQuery,
    PipelineStatus,
    StalestSymbolOut,
    SymbolBar,
    SymbolCounts,
    SymbolReadiness,
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

# Every encoded bar starts with its time.
_BAR_START = b'{"time":'
# A long-format row starts with its symbol.
_ROW_START = b'{"symbol":'
# A cursor's length varies by a few digits with the time it carries.
_CURSOR_SLACK = 64

_FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
_encoder = msgspec.json.Encoder()


def wire_size(body: bytes) -> int:
    """Bytes `body` occupies inside the Lambda proxy response, after JSON string escaping (a
    JSON body has no raw line breaks; a CSV body has one per row)."""
    return len(body) + body.count(b'"') + body.count(b"\\") + body.count(b"\n") + body.count(b"\r")


# The fewest wire bytes one bar can take (a time is always at least 20 characters, a number
# at least 3), plus its comma: no page holds more bars than the budget divided by this.
_SMALLEST_BAR = Bar(_FAR_PAST, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, True, [])
_MIN_BAR_WIRE_BYTES = wire_size(_encoder.encode(_SMALLEST_BAR)) + 1
# The same for a long-format row, whose symbol has at least one character.
_SMALLEST_ROW = SymbolBar("A", *msgspec.structs.astuple(_SMALLEST_BAR))
_MIN_ROW_WIRE_BYTES = wire_size(_encoder.encode(_SMALLEST_ROW)) + 1


def historical_page(
    conn: Connection,
    raw_symbol: str,
    query: HistoricalQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """One page of bars as encoded JSON in the order asked for, never over `max_response_bytes`
    on the wire: a page cut short by size carries a next_cursor like one cut by `limit`."""
    tracked, plan, after = _start_historical(conn, raw_symbol, query)
    symbol = tracked.symbol

    # One extra row tells whether another page exists without a second query; no more rows
    # are read than could possibly fit in the response.
    fits_at_most = max_response_bytes // _MIN_BAR_WIRE_BYTES + 1
    page_range = plan.page_range(min(query.limit, fits_at_most) + 1)
    rows = repository.get_bars_page(conn, symbol, after, page_range)
    bars = rows[: query.limit]
    more = len(rows) > query.limit
    if not bars and query.cursor is None:
        _explain_no_bars(conn, tracked, query.timeframe)

    def envelope(count: int, next_after: datetime | None) -> bytes:
        next_cursor = (
            encode_cursor(plan.cursor_query, Position(symbol, next_after), secret=plan.secret)
            if next_after
            else None
        )
        return _encoder.encode(
            HistoricalPage(
                symbol=symbol,
                timeframe=query.timeframe,
                adjusted=query.adjusted,
                start=plan.start,
                end=plan.end,
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
    # The budget counts a cursor even when the head had none (all rows read, but not all fit).
    budget = max_response_bytes - wire_size(envelope(len(bars), bars[-1].time)) - _CURSOR_SLACK
    count, prefix = _bars_within(bars_json, bars_wire, budget)
    return _splice(envelope(count, bars[count - 1].time), prefix)


class _Plan(msgspec.Struct, frozen=True):
    """A bar query's checked bounds, its cursor identity and where its first page starts."""

    query: BarQuery
    start: str | None
    end: str | None
    start_at: datetime
    end_before: datetime
    cursor_query: CursorQuery
    first_position: datetime
    secret: bytes

    def page_range(self, limit: int) -> repository.PageRange:
        """What the repository reads for a page of at most `limit` rows."""
        return repository.PageRange(
            timeframe=self.query.timeframe,
            start_at=self.start_at,
            end_before=self.end_before,
            validated_only=self.query.validated_only,
            limit=limit,
            descending=self.query.sort == "desc",
            adjusted=self.query.adjusted,
        )


def _start_historical(
    conn: Connection, raw_symbol: str, query: BarQuery
) -> tuple[TrackedSymbol, _Plan, datetime]:
    """A historical page's symbol, plan and position (the time it reads past), JSON or CSV;
    refuses traded prices that are not stored yet."""
    tracked = resolve_symbol(conn, raw_symbol)
    plan = _plan(query, tracked.symbol)
    after = plan.first_position
    if query.cursor is not None:
        after = decode_cursor(query.cursor, plan.cursor_query, secret=plan.secret).time
    if not query.adjusted:
        refuse_unknown_traded_prices(conn, [tracked.symbol], query.timeframe)
    return tracked, plan, after


def _start_bars(conn: Connection, query: BarsQuery) -> tuple[list[str], _Plan, Position]:
    """A multi-symbol page's symbols, plan and position, JSON or CSV: refuses untracked
    symbols, a first page of symbols with nothing to read yet, and traded prices not stored."""
    symbols = parse_symbol_list(query.symbols)
    plan = _plan(query, ",".join(symbols))
    readiness = repository.get_symbols_readiness(conn, symbols=symbols, timeframe=query.timeframe)
    _refuse_unknown([row.symbol for row in readiness if row.timeframes is None])
    if query.cursor is None:
        _explain_missing_bars(readiness, query.timeframe)
        after = Position("", plan.first_position)  # "" sorts before every symbol
    else:
        after = decode_cursor(query.cursor, plan.cursor_query, secret=plan.secret)
    if not query.adjusted:
        refuse_unknown_traded_prices(conn, symbols, query.timeframe)
    return symbols, plan, after


def _plan(query: BarQuery, symbols: str) -> _Plan:
    start = parse_start(query.start) if query.start is not None else None
    end = parse_end(query.end) if query.end is not None else None
    check_order(start, end)
    maximum = MAX_MINUTE_PAGE_LIMIT if query.timeframe == "1m" else MAX_PAGE_LIMIT
    if query.limit > maximum:
        raise BadRequest(
            f"limit must be at most {maximum} for timeframe {query.timeframe}",
            details={"limit": query.limit},
        )
    start_text = start.canonical if start else None
    end_text = end.canonical if end else None
    return _Plan(
        query=query,
        start=start_text,
        end=end_text,
        start_at=start.at if start else _FAR_PAST,
        end_before=end.at if end else _FAR_FUTURE,
        cursor_query=CursorQuery(
            symbols,
            query.timeframe,
            start_text,
            end_text,
            query.validated_only,
            query.sort,
            query.adjusted,
        ),
        # Past the far end in the page's direction: the first page reads from the very start.
        first_position=_FAR_FUTURE if query.sort == "desc" else _FAR_PAST,
        secret=get_settings().cursor_secret.encode(),
    )


def _splice(envelope: bytes, bars_json: bytes) -> bytes:
    return envelope.replace(b'"bars":[]', b'"bars":' + bars_json, 1)


def _bars_within(
    bars_json: bytes, bars_wire: int, budget: int, *, row_start: bytes = _BAR_START
) -> tuple[int, bytes]:
    """The longest prefix of the encoded array `bars_json` (`bars_wire` wire bytes) that holds
    whole bars and stays within `budget` wire bytes, closed as an array; at least one bar.
    Every element starts with `row_start`, its first key."""
    separator = b"}," + row_start
    # Start near where the budget runs out (bars of one query are close in size), then step
    # back bar by bar until it fits.
    density = bars_wire / len(bars_json)
    end = bars_json.rfind(separator, 0, int(budget / density))
    while end > 0 and wire_size(bars_json[: end + 1]) + 1 > budget:
        end = bars_json.rfind(separator, 0, end)
    if end <= 0:
        end = bars_json.find(separator)
        if end < 0:  # a single bar: it is served whatever its size
            return bars_json.count(row_start), bars_json
    prefix = bars_json[: end + 1] + b"]"
    return prefix.count(row_start), prefix


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
    reason = _no_bars_reason(
        tracked.symbol,
        tracked.timeframes,
        timeframe,
        has_bars=readiness.has_bars,
        backfill_status=readiness.backfill_status,
        last_backfill=readiness.last_backfill,
    )
    if reason is not None:
        raise NotFound(reason[0], details=reason[1])


def _explain_missing_bars(readiness: list[SymbolReadiness], timeframe: str) -> None:
    """The same for several tracked symbols: one 404 naming every symbol that has nothing to
    read yet at `timeframe`, each with its reason."""
    reasons = [
        reason
        for row in readiness
        if (
            reason := _no_bars_reason(
                row.symbol,
                row.timeframes or [],
                timeframe,
                has_bars=row.has_bars,
                backfill_status=row.backfill_status,
                last_backfill=row.last_backfill,
            )
        )
        is not None
    ]
    if len(reasons) == 1:
        raise NotFound(reasons[0][0], details=reasons[0][1])
    if reasons:
        raise NotFound(
            f"{len(reasons)} symbols have no {timeframe} bars to read: "
            + " ".join(message for message, _ in reasons),
            details={"timeframe": timeframe, "symbols": [details for _, details in reasons]},
        )


def _no_bars_reason(
    symbol: str,
    tracked_timeframes: list[str],
    timeframe: str,
    *,
    has_bars: bool,
    backfill_status: str | None,
    last_backfill: datetime | None,
) -> tuple[str, dict[str, object]] | None:
    """Why `symbol` has no bars at `timeframe` to read (message, details), or None when it has
    bars, or its backfill completed and found none (nothing traded)."""
    if has_bars:
        return None
    details: dict[str, object] = {"symbol": symbol, "timeframe": timeframe}
    if timeframe not in tracked_timeframes:
        return (
            f"{symbol} is not tracked at {timeframe}; its timeframes are "
            f"{', '.join(tracked_timeframes)} (an admin can add {timeframe} with "
            f"PUT /api/v1/admin/symbols/{symbol})",
            {**details, "tracked_timeframes": list(tracked_timeframes)},
        )
    if last_backfill is None:
        status = backfill_status or "pending"
        return (
            f"{symbol} has no {timeframe} bars yet: its first backfill has not "
            f"completed (backfill status {status}). Bars arrive with the next scheduled "
            f"backfill; an admin can start one now with "
            f"POST /api/v1/admin/symbols/{symbol}/backfill",
            {**details, "backfill_status": status},
        )
    return None


def parse_symbol_list(text: str) -> list[str]:
    """The stored spellings of a `symbols` parameter, sorted; BadRequest for an empty item,
    a bad spelling, a symbol named twice (in any spelling) or more than the maximum."""
    raw_items = [item.strip() for item in text.split(",")]
    if len(raw_items) > MAX_SYMBOLS_PER_REQUEST:
        raise BadRequest(
            f"symbols names {len(raw_items)} symbols; at most {MAX_SYMBOLS_PER_REQUEST} per "
            "request",
            details={"parameter": "symbols", "count": len(raw_items)},
        )
    if not all(raw_items):
        raise BadRequest(
            "symbols must be a comma-separated list of symbols with no empty item",
            details={"parameter": "symbols"},
        )
    first_spelling: dict[str, str] = {}
    duplicates: list[str] = []
    for raw in raw_items:
        try:
            symbol, _ = normalize_symbol(raw)
        except BadRequest as exc:
            raise BadRequest(
                f"symbols: {exc.message}", details={"parameter": "symbols", "symbol": raw[:40]}
            ) from None
        if symbol in first_spelling:
            earlier = first_spelling[symbol]
            duplicates.append(raw if raw == earlier else f"{raw} (same as {earlier})")
        first_spelling.setdefault(symbol, raw)
    if duplicates:
        raise BadRequest(
            f"symbols names a symbol more than once: {', '.join(duplicates)}",
            details={"parameter": "symbols", "duplicates": duplicates},
        )
    return sorted(first_spelling)


class TradedPricesUnknown(Conflict):
    """Traded prices were asked of units that still hold only split-adjusted bars."""


def refuse_unknown_traded_prices(conn: Connection, symbols: list[str], timeframe: str) -> None:
    """Refuse `adjusted=false` for units whose bars are still the split-adjusted ones stored
    before migration 0009: dividing back by the splits would guess at what the provider had
    applied, so they are served adjusted until their next backfill re-fetches them as traded."""
    pending = repository.list_split_adjusted_units(conn, symbols=symbols, timeframe=timeframe)
    if pending:
        names = ", ".join(pending)
        raise TradedPricesUnknown(
            f"traded (unadjusted) {timeframe} prices of {names} are not stored yet: the bars "
            "were stored split-adjusted, and the next backfill re-fetches them as traded. Ask "
            "with adjusted=true meanwhile; an admin can start the backfill now with POST "
            "/api/v1/admin/symbols/{symbol}/backfill",
            details={"timeframe": timeframe, "symbols": pending},
        )


def _refuse_unknown(unknown: list[str]) -> None:
    if unknown:
        raise NotFound(
            f"not tracked: {', '.join(unknown)} (GET /api/v1/symbols lists the tracked symbols)",
            details={"unknown_symbols": unknown},
        )


def latest_bars(conn: Connection, query: LatestQuery) -> LatestBars:
    """Each requested symbol's last bar, read in one query. A symbol with nothing to read yet
    is a 404 that says why, as on the other bar endpoints."""
    symbols = parse_symbol_list(query.symbols)
    rows = repository.get_latest_bars(
        conn,
        symbols=symbols,
        timeframe=query.timeframe,
        validated_only=query.validated_only,
        adjusted=query.adjusted,
    )
    _refuse_unknown([row.symbol for row in rows if row.timeframes is None])
    if not query.adjusted:
        refuse_unknown_traded_prices(conn, symbols, query.timeframe)
    without_bar = [row.symbol for row in rows if row.bar is None]
    if without_bar:
        # Only when a symbol has no bar to show: the answer is a 404, so its cost is no issue.
        readiness = repository.get_symbols_readiness(
            conn, symbols=without_bar, timeframe=query.timeframe
        )
        _explain_missing_bars(readiness, query.timeframe)
    bars = [
        SymbolBar(row.symbol, *msgspec.structs.astuple(row.bar))
        for row in rows
        if row.bar is not None
    ]
    return LatestBars(
        timeframe=query.timeframe, adjusted=query.adjusted, count=len(bars), bars=bars
    )


def bars_page(
    conn: Connection,
    query: BarsQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """One page of long-format rows of many symbols as encoded JSON, ordered by symbol and
    then time, under `max_response_bytes` on the wire like a historical page."""
    symbols, plan, after = _start_bars(conn, query)
    fits_at_most = max_response_bytes // _MIN_ROW_WIRE_BYTES + 1
    page_range = plan.page_range(min(query.limit, fits_at_most) + 1)
    rows = repository.get_many_bars_page(conn, symbols, (after.symbol, after.time), page_range)
    page = rows[: query.limit]
    more = len(rows) > query.limit

    def envelope(count: int, last: SymbolBar | None) -> bytes:
        next_cursor = (
            encode_cursor(plan.cursor_query, Position(last.symbol, last.time), secret=plan.secret)
            if last
            else None
        )
        return _encoder.encode(
            BarsPage(
                timeframe=query.timeframe,
                adjusted=query.adjusted,
                symbols=symbols,
                start=plan.start,
                end=plan.end,
                count=count,
                bars=[],
                next_cursor=next_cursor,
            )
        )

    rows_json = _encoder.encode(page)
    rows_wire = wire_size(rows_json)
    head = envelope(len(page), page[-1] if more and page else None)
    if wire_size(head) - len(b"[]") + rows_wire <= max_response_bytes:
        return _splice(head, rows_json)
    # As for a historical page: the budget always counts a cursor.
    budget = max_response_bytes - wire_size(envelope(len(page), page[-1])) - _CURSOR_SLACK
    count, prefix = _bars_within(rows_json, rows_wire, budget, row_start=_ROW_START)
    return _splice(envelope(count, page[count - 1]), prefix)


# --- CSV ------------------------------------------------------------------------------------------


class CsvPage(msgspec.Struct, frozen=True):
    """A page as CSV: a header row and one line per bar; the next page's cursor travels
    beside it (the route puts it in a `Link` header), None on the last page."""

    body: bytes
    next_cursor: str | None


def historical_csv(
    conn: Connection,
    raw_symbol: str,
    query: HistoricalQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> CsvPage:
    """The page `historical_page` serves, as CSV written by PostgreSQL."""
    tracked, plan, after = _start_historical(conn, raw_symbol, query)
    symbol = tracked.symbol
    data = repository.copy_bars_page_csv(conn, symbol, after, plan.page_range(query.limit + 1))
    if not data and query.cursor is None:
        _explain_no_bars(conn, tracked, query.timeframe)

    def position_of(line: bytes) -> Position:
        return Position(symbol, _csv_time(line.split(b",", 1)[0]))

    return _csv_page(
        data, repository.CSV_BAR_HEADER, query.limit, plan, position_of, max_response_bytes
    )


def bars_csv(
    conn: Connection,
    query: BarsQuery,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> CsvPage:
    """The page `bars_page` serves, as CSV written by PostgreSQL, symbol first."""
    symbols, plan, after = _start_bars(conn, query)
    data = repository.copy_many_bars_page_csv(
        conn, symbols, (after.symbol, after.time), plan.page_range(query.limit + 1)
    )

    def position_of(line: bytes) -> Position:
        symbol, time_text, _ = line.split(b",", 2)
        return Position(symbol.decode(), _csv_time(time_text))

    return _csv_page(
        data, repository.CSV_ROW_HEADER, query.limit, plan, position_of, max_response_bytes
    )


def _csv_page(
    data: bytes,
    header: bytes,
    limit: int,
    plan: _Plan,
    position_of: Callable[[bytes], Position],
    max_response_bytes: int,
) -> CsvPage:
    """Header plus at most `limit` of the CSV lines in `data` (which may hold one more, the
    sign of a next page), cut to whole lines under `max_response_bytes` on the wire."""
    lines = data.split(b"\n")
    lines.pop()  # what follows the last line break: nothing
    more = len(lines) > limit
    kept = lines[:limit]
    body = header + b"".join(line + b"\n" for line in kept)
    # The cursor travels in a header, inside the envelope's headroom.
    if wire_size(body) > max_response_bytes:
        size = wire_size(header)
        for index, line in enumerate(kept):
            size += wire_size(line) + 2  # the line break, escaped
            if size > max_response_bytes and index > 0:
                kept = kept[:index]
                more = True
                break
        body = header + b"".join(line + b"\n" for line in kept)
    next_cursor = (
        encode_cursor(plan.cursor_query, position_of(kept[-1]), secret=plan.secret)
        if more and kept
        else None
    )
    return CsvPage(body=body, next_cursor=next_cursor)


def _csv_time(text: bytes) -> datetime:
    return datetime.fromisoformat(text.decode())
