"""All read SQL on bars, tracked symbols, backfill runs and backfill state for the market data
endpoints. Functions take a connection and never commit; writes belong to the backfill."""

from __future__ import annotations

from datetime import datetime
from itertools import starmap
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from chalicelib.marketdata.models import (
    BackfillRunRow,
    Bar,
    LatestRow,
    StalestSymbol,
    SymbolBar,
    SymbolRange,
    SymbolReadiness,
    TimeframeBackfillRow,
    TimeframeReadiness,
)

Connection = psycopg.Connection[Any]

# Where each kind of price is read: split-adjusted from the `adjusted_bars` view (migration
# 0009), as traded from the table. The view has the table's columns and keeps its primary-key
# range scans, so every bar query below is written once, with `{bars}` for the relation.
PRICE_RELATIONS = {True: "adjusted_bars", False: "bars"}


def _by_prices(template: str, **parts: str) -> dict[bool, str]:
    """`template` for split-adjusted (True) and traded (False) prices."""
    return {
        adjusted: template.format(bars=relation, **parts)
        for adjusted, relation in PRICE_RELATIONS.items()
    }


# Both bounds are always concrete (the caller passes far-past/far-future instants for an open
# end), so the plan is one range scan of the primary key, in its order, with no sort.
_SELECT_BARS_PAGE = """
SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
FROM {bars}
WHERE symbol = %(symbol)s
  AND timeframe = %(timeframe)s
  AND time >= %(start_at)s
  AND time > %(after)s
  AND time < %(end_before)s
  AND (validated OR NOT %(validated_only)s)
ORDER BY time
LIMIT %(limit)s
"""
SELECT_BARS_PAGE = _by_prices(_SELECT_BARS_PAGE)

# Newest first: the same range scan of the primary key, backwards.
_SELECT_BARS_PAGE_DESC = """
SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
FROM {bars}
WHERE symbol = %(symbol)s
  AND timeframe = %(timeframe)s
  AND time >= %(start_at)s
  AND time < %(after)s
  AND time < %(end_before)s
  AND (validated OR NOT %(validated_only)s)
ORDER BY time DESC
LIMIT %(limit)s
"""
SELECT_BARS_PAGE_DESC = _by_prices(_SELECT_BARS_PAGE_DESC)

# First and last bar over the symbol's tracked timeframes: two index probes per timeframe.
SELECT_ACTIVE_SYMBOL_RANGES = """
SELECT s.symbol, s.asset_class, s.timeframes, r.first_bar, r.last_bar
FROM tracked_symbols AS s
LEFT JOIN LATERAL (
    SELECT min(f.time) AS first_bar, max(l.time) AS last_bar
    FROM unnest(s.timeframes) AS tf(name)
    LEFT JOIN LATERAL (
        SELECT b.time FROM bars AS b
        WHERE b.symbol = s.symbol AND b.timeframe = tf.name
        ORDER BY b.time LIMIT 1
    ) AS f ON true
    LEFT JOIN LATERAL (
        SELECT b.time FROM bars AS b
        WHERE b.symbol = s.symbol AND b.timeframe = tf.name
        ORDER BY b.time DESC LIMIT 1
    ) AS l ON true
) AS r ON true
WHERE s.active AND (%(symbol)s::text IS NULL OR s.symbol = %(symbol)s)
ORDER BY s.symbol
"""

# Every tracked timeframe of the active symbols (or of one), with its backfill state; one with
# no backfill_state row yet is pending, as COUNT_ACTIVE_TIMEFRAMES_BY_STATUS counts it.
SELECT_ACTIVE_TIMEFRAME_BACKFILL = """
SELECT s.symbol, tf.name AS timeframe, coalesce(st.status, 'pending') AS status,
       st.last_backfill, st.last_error
FROM tracked_symbols AS s
CROSS JOIN LATERAL unnest(s.timeframes) AS tf(name)
LEFT JOIN backfill_state AS st ON st.symbol = s.symbol AND st.timeframe = tf.name
WHERE s.active AND (%(symbol)s::text IS NULL OR s.symbol = %(symbol)s)
ORDER BY s.symbol
"""

COUNT_ACTIVE_SYMBOLS_BY_STATUS = """
SELECT backfill_status, count(*) FROM tracked_symbols WHERE active GROUP BY backfill_status
"""

# Every tracked (symbol, timeframe): one with no backfill_state row yet (just added, never
# planned) is pending, as it is for the symbol's own roll-up.
COUNT_ACTIVE_TIMEFRAMES_BY_STATUS = """
SELECT coalesce(st.status, 'pending') AS status, count(*)
FROM tracked_symbols AS s
CROSS JOIN LATERAL unnest(s.timeframes) AS tf(name)
LEFT JOIN backfill_state AS st ON st.symbol = s.symbol AND st.timeframe = tf.name
WHERE s.active
GROUP BY 1
"""

# Why a read found no bars: are there any at all, and has a backfill of them ever completed?
SELECT_TIMEFRAME_READINESS = """
SELECT
    EXISTS (
        SELECT 1 FROM bars WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
    ) AS has_bars,
    st.status AS backfill_status,
    st.last_backfill
FROM (SELECT 1) AS one
LEFT JOIN backfill_state AS st ON st.symbol = %(symbol)s AND st.timeframe = %(timeframe)s
"""

# Never backfilled sorts first: it is the stalest of all.
SELECT_STALEST_SYMBOL = """
SELECT symbol, backfill_status, last_backfill
FROM tracked_symbols
WHERE active
ORDER BY last_backfill ASC NULLS FIRST, symbol
LIMIT 1
"""

SELECT_RECENT_RUNS = """
SELECT id, symbol, timeframe, status, started_at, finished_at, bars_written,
       provider_requests, error
FROM backfill_runs
ORDER BY id DESC
LIMIT %(limit)s
"""

# One row per (symbol, timeframe), kept exact by triggers on bars (migration 0007): the status
# endpoint reads as many rows as there are units, however many bars they hold.
COUNT_BARS = """
SELECT coalesce(sum(bars), 0)::bigint, coalesce(sum(validated_bars), 0)::bigint FROM bar_counts
"""


class PageRange(msgspec.Struct, frozen=True, kw_only=True):
    """The bars one page reads, as JSON rows or as CSV alike: one timeframe, start_at <= time <
    end_before, past the cursor's position in the order asked for (oldest first: time > after;
    newest first: time < after), at most `limit`, split-adjusted or traded."""

    timeframe: str
    start_at: datetime
    end_before: datetime
    validated_only: bool
    limit: int
    descending: bool = False
    adjusted: bool = True

    def params(self, **position: object) -> dict[str, object]:
        return {
            "timeframe": self.timeframe,
            "start_at": self.start_at,
            "end_before": self.end_before,
            "validated_only": self.validated_only,
            "limit": self.limit,
            **position,
        }

    def pick(self, ascending: dict[bool, str], descending: dict[bool, str]) -> str:
        """The statement for this page's order and kind of prices."""
        return (descending if self.descending else ascending)[self.adjusted]


def get_bars_page(conn: Connection, symbol: str, after: datetime, page: PageRange) -> list[Bar]:
    """The bars of `symbol` that `page` reads."""
    sql = page.pick(SELECT_BARS_PAGE, SELECT_BARS_PAGE_DESC)
    rows = conn.execute(sql, page.params(symbol=symbol, after=after)).fetchall()
    # Tuples turned into Bars by starmap: positional construction with no Python frame per
    # row, on the hot path of the largest responses (a row factory costs a call per row).
    return list(starmap(Bar, rows))


def list_active_symbol_ranges(conn: Connection, *, symbol: str | None = None) -> list[SymbolRange]:
    """Every active symbol's first and last bar, or only `symbol`'s."""
    with conn.cursor(row_factory=class_row(SymbolRange)) as cur:
        return cur.execute(SELECT_ACTIVE_SYMBOL_RANGES, {"symbol": symbol}).fetchall()


def list_active_timeframe_backfill(
    conn: Connection, *, symbol: str | None = None
) -> list[TimeframeBackfillRow]:
    """The backfill state of every tracked timeframe of the active symbols, or of `symbol`'s."""
    with conn.cursor(row_factory=class_row(TimeframeBackfillRow)) as cur:
        return cur.execute(SELECT_ACTIVE_TIMEFRAME_BACKFILL, {"symbol": symbol}).fetchall()


def count_active_symbols_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(COUNT_ACTIVE_SYMBOLS_BY_STATUS).fetchall()
    return {status: count for status, count in rows}


def count_active_timeframes_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(COUNT_ACTIVE_TIMEFRAMES_BY_STATUS).fetchall()
    return {status: count for status, count in rows}


def get_timeframe_readiness(conn: Connection, symbol: str, timeframe: str) -> TimeframeReadiness:
    with conn.cursor(row_factory=class_row(TimeframeReadiness)) as cur:
        row = cur.execute(
            SELECT_TIMEFRAME_READINESS, {"symbol": symbol, "timeframe": timeframe}
        ).fetchone()
    assert row is not None  # the query always returns its one row
    return row


def get_stalest_symbol(conn: Connection) -> StalestSymbol | None:
    with conn.cursor(row_factory=class_row(StalestSymbol)) as cur:
        return cur.execute(SELECT_STALEST_SYMBOL).fetchone()


def list_recent_runs(conn: Connection, *, limit: int) -> list[BackfillRunRow]:
    """The newest `limit` backfill runs of any symbol and timeframe, newest first."""
    with conn.cursor(row_factory=class_row(BackfillRunRow)) as cur:
        return cur.execute(SELECT_RECENT_RUNS, {"limit": limit}).fetchall()


def count_bars(conn: Connection) -> tuple[int, int]:
    """(all bars, validated bars), from the per-unit counts."""
    row = conn.execute(COUNT_BARS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# --- Multi-symbol reads: latest bars, bars of many symbols ------------------------------------

# One statement answers the whole request: which symbols are tracked, and each one's last bar
# (a backwards probe of the primary key per symbol, LIMIT 1).
_SELECT_LATEST_BARS = """
SELECT r.symbol, s.timeframes,
       b.time, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades, b.validated, b.flags
FROM unnest(%(symbols)s::text[]) AS r(symbol)
LEFT JOIN tracked_symbols AS s ON s.symbol = r.symbol
LEFT JOIN LATERAL (
    SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
    FROM {bars} AS bars
    WHERE bars.symbol = r.symbol
      AND bars.timeframe = %(timeframe)s
      AND (bars.validated OR NOT %(validated_only)s)
    ORDER BY bars.time DESC
    LIMIT 1
) AS b ON true
ORDER BY r.symbol
"""
SELECT_LATEST_BARS = _by_prices(_SELECT_LATEST_BARS)


def get_latest_bars(
    conn: Connection,
    *,
    symbols: list[str],
    timeframe: str,
    validated_only: bool,
    adjusted: bool = True,
) -> list[LatestRow]:
    """Each of `symbols` (sorted) with its tracked timeframes and its last bar, in one query."""
    rows = conn.execute(
        SELECT_LATEST_BARS[adjusted],
        {"symbols": symbols, "timeframe": timeframe, "validated_only": validated_only},
    ).fetchall()
    return [
        LatestRow(row[0], row[1], Bar(*row[2:]) if row[2] is not None else None) for row in rows
    ]


# Bars of many symbols ordered by (symbol, time). The outer list is sorted, so the planner knows
# rows arrive symbol by symbol and only sorts within one symbol's rows (an incremental sort):
# the per-symbol range scans run one after another and stop as soon as the page is full,
# instead of reading every symbol's range and sorting it all. The position is (symbol, time):
# symbols before the cursor's are skipped, the cursor's own resumes after its time (a bound of
# the index scan, not a filter over the rows before it).
_SELECT_MANY_BARS = """
SELECT s.symbol, b.time, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades,
       b.validated, b.flags
FROM (
    SELECT symbol FROM unnest(%(symbols)s::text[]) AS r(symbol)
    WHERE symbol >= %(after_symbol)s
    ORDER BY symbol
) AS s
CROSS JOIN LATERAL (
    SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
    FROM {bars} AS bars
    WHERE bars.symbol = s.symbol
      AND bars.timeframe = %(timeframe)s
      AND bars.time >= %(start_at)s
      AND bars.time < %(end_before)s
      AND bars.time {past} (
          CASE WHEN s.symbol = %(after_symbol)s THEN %(after)s::timestamptz ELSE {open_end} END
      )
      AND (bars.validated OR NOT %(validated_only)s)
    ORDER BY bars.time {direction}
    LIMIT %(limit)s
) AS b
ORDER BY s.symbol, b.time {direction}
LIMIT %(limit)s
"""
SELECT_MANY_BARS_PAGE = _by_prices(
    _SELECT_MANY_BARS, past=">", open_end="'-infinity'::timestamptz", direction="ASC"
)
SELECT_MANY_BARS_PAGE_DESC = _by_prices(
    _SELECT_MANY_BARS, past="<", open_end="'infinity'::timestamptz", direction="DESC"
)


def get_many_bars_page(
    conn: Connection, symbols: list[str], after: tuple[str, datetime], page: PageRange
) -> list[SymbolBar]:
    """The bars of `symbols` that `page` reads, ordered by symbol and then time, past the
    position `after` (symbol, time)."""
    sql = page.pick(SELECT_MANY_BARS_PAGE, SELECT_MANY_BARS_PAGE_DESC)
    params = page.params(symbols=symbols, after_symbol=after[0], after=after[1])
    return list(starmap(SymbolBar, conn.execute(sql, params).fetchall()))


# Which of the requested symbols are tracked, and for each whether it has any bar at the
# timeframe and how its backfill stands: one probe of the primary key per symbol.
SELECT_SYMBOLS_READINESS = """
SELECT r.symbol, s.timeframes,
       EXISTS (
           SELECT 1 FROM bars WHERE bars.symbol = r.symbol AND bars.timeframe = %(timeframe)s
       ) AS has_bars,
       st.status AS backfill_status,
       st.last_backfill
FROM unnest(%(symbols)s::text[]) AS r(symbol)
LEFT JOIN tracked_symbols AS s ON s.symbol = r.symbol
LEFT JOIN backfill_state AS st ON st.symbol = r.symbol AND st.timeframe = %(timeframe)s
ORDER BY r.symbol
"""


def get_symbols_readiness(
    conn: Connection, *, symbols: list[str], timeframe: str
) -> list[SymbolReadiness]:
    with conn.cursor(row_factory=class_row(SymbolReadiness)) as cur:
        return cur.execute(
            SELECT_SYMBOLS_READINESS, {"symbols": symbols, "timeframe": timeframe}
        ).fetchall()


# --- CSV pages: PostgreSQL writes the rows (COPY … TO STDOUT, RFC 4180 quoting) ---------------

# RFC 3339 UTC, with a fraction only when the time has one (bars start on whole seconds).
_CSV_TIME = """
to_char(page.time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN extract(microseconds FROM page.time)::bigint %% 1000000 = 0 THEN 'Z'
            ELSE to_char(page.time AT TIME ZONE 'UTC', '.US') || 'Z' END
"""
# Booleans as true/false, flags joined by `;`, NULL (no vwap, no trades, no flags) as empty.
_CSV_BAR_COLUMNS = f"""
{_CSV_TIME}, page.open, page.high, page.low, page.close, page.volume, page.vwap, page.trades,
CASE WHEN page.validated THEN 'true' ELSE 'false' END,
NULLIF(array_to_string(page.flags, ';'), '')
"""
CSV_BAR_HEADER = b"time,open,high,low,close,volume,vwap,trades,validated,flags\n"
CSV_ROW_HEADER = b"symbol," + CSV_BAR_HEADER


def _copy_csv(pages: dict[bool, str], columns: str, order: str) -> dict[bool, str]:
    return {
        adjusted: f"COPY (SELECT {columns} FROM ({page_sql}) AS page ORDER BY {order}) "
        "TO STDOUT (FORMAT csv)"
        for adjusted, page_sql in pages.items()
    }


COPY_BARS_PAGE_CSV = _copy_csv(SELECT_BARS_PAGE, _CSV_BAR_COLUMNS, "page.time")
COPY_BARS_PAGE_DESC_CSV = _copy_csv(SELECT_BARS_PAGE_DESC, _CSV_BAR_COLUMNS, "page.time DESC")
COPY_MANY_BARS_PAGE_CSV = _copy_csv(
    SELECT_MANY_BARS_PAGE, "page.symbol, " + _CSV_BAR_COLUMNS, "page.symbol, page.time"
)
COPY_MANY_BARS_PAGE_DESC_CSV = _copy_csv(
    SELECT_MANY_BARS_PAGE_DESC, "page.symbol, " + _CSV_BAR_COLUMNS, "page.symbol, page.time DESC"
)


def _copy_out(conn: Connection, sql: str, params: dict[str, object]) -> bytes:
    with conn.cursor() as cur, cur.copy(sql, params) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def copy_bars_page_csv(conn: Connection, symbol: str, after: datetime, page: PageRange) -> bytes:
    """The rows `get_bars_page` reads, as CSV lines (no header), one per bar."""
    sql = page.pick(COPY_BARS_PAGE_CSV, COPY_BARS_PAGE_DESC_CSV)
    return _copy_out(conn, sql, page.params(symbol=symbol, after=after))


def copy_many_bars_page_csv(
    conn: Connection, symbols: list[str], after: tuple[str, datetime], page: PageRange
) -> bytes:
    """The rows `get_many_bars_page` reads, as CSV lines (no header), symbol first."""
    sql = page.pick(COPY_MANY_BARS_PAGE_CSV, COPY_MANY_BARS_PAGE_DESC_CSV)
    params = page.params(symbols=symbols, after_symbol=after[0], after=after[1])
    return _copy_out(conn, sql, params)


# Units among `symbols` at `timeframe` whose bars are still the split-adjusted ones stored
# before migration 0009: their traded prices are not known until their next backfill.
SELECT_SPLIT_ADJUSTED_UNITS = """
SELECT symbol FROM backfill_state
WHERE symbol = ANY(%(symbols)s) AND timeframe = %(timeframe)s
  AND stored_prices = 'split_adjusted'
ORDER BY symbol
"""


def list_split_adjusted_units(conn: Connection, *, symbols: list[str], timeframe: str) -> list[str]:
    """Which of `symbols` hold only split-adjusted `timeframe` bars (no traded prices yet)."""
    rows = conn.execute(
        SELECT_SPLIT_ADJUSTED_UNITS, {"symbols": symbols, "timeframe": timeframe}
    ).fetchall()
    return [row[0] for row in rows]
