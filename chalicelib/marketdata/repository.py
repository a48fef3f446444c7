"""All read SQL on bars, tracked symbols, backfill runs and backfill state for the market data
endpoints. Functions take a connection and never commit; writes belong to the backfill."""

from __future__ import annotations

from datetime import datetime
from itertools import starmap
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.marketdata.models import (
    BackfillRunRow,
    Bar,
    StalestSymbol,
    SymbolRange,
    TimeframeBackfillRow,
    TimeframeReadiness,
)

Connection = psycopg.Connection[Any]

# Both bounds are always concrete (the caller passes far-past/far-future instants for an open
# end), so the plan is one range scan of the primary key, in its order, with no sort.
SELECT_BARS_PAGE = """
SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
FROM bars
WHERE symbol = %(symbol)s
  AND timeframe = %(timeframe)s
  AND time >= %(start_at)s
  AND time > %(after)s
  AND time < %(end_before)s
  AND (validated OR NOT %(validated_only)s)
ORDER BY time
LIMIT %(limit)s
"""

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


def get_bars_page(
    conn: Connection,
    *,
    symbol: str,
    timeframe: str,
    start_at: datetime,
    end_before: datetime,
    after: datetime,
    validated_only: bool,
    limit: int,
) -> list[Bar]:
    """Up to `limit` bars in time order with `start_at <= time < end_before` and `time > after`."""
    params = {
        "symbol": symbol,
        "timeframe": timeframe,
        "start_at": start_at,
        "end_before": end_before,
        "after": after,
        "validated_only": validated_only,
        "limit": limit,
    }
    # Tuples turned into Bars by starmap: positional construction with no Python frame per
    # row, on the hot path of the largest responses (a row factory costs a call per row).
    rows = conn.execute(SELECT_BARS_PAGE, params).fetchall()
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
