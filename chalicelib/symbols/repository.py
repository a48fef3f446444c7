"""All SQL for tracked symbols. Functions take a connection and never commit."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.errors import Conflict
from chalicelib.symbols.models import TimeframeCounts, TrackedSymbol

Connection = psycopg.Connection[Any]

INSERT_SYMBOL_IF_ABSENT = """
INSERT INTO tracked_symbols (symbol, asset_class, timeframes)
VALUES (%(symbol)s, %(asset_class)s, %(timeframes)s)
ON CONFLICT (symbol) DO NOTHING
"""


def insert_symbols_if_absent(
    conn: Connection, symbols: list[tuple[str, str]], *, timeframes: list[str]
) -> int:
    """Insert (symbol, asset_class) pairs that are not tracked yet; return how many were new."""
    added = 0
    with conn.cursor() as cur:
        for symbol, asset_class in symbols:
            cur.execute(
                INSERT_SYMBOL_IF_ABSENT,
                {"symbol": symbol, "asset_class": asset_class, "timeframes": timeframes},
            )
            added += cur.rowcount
    return added


SYMBOL_COLUMNS = """
    symbol, asset_class, timeframes, active, backfill_status, last_backfill, last_error,
    created_at, updated_at
"""

INSERT_SYMBOL = f"""
INSERT INTO tracked_symbols (symbol, asset_class, timeframes)
VALUES (%(symbol)s, %(asset_class)s, %(timeframes)s)
RETURNING {SYMBOL_COLUMNS}
"""

SELECT_SYMBOL = f"SELECT {SYMBOL_COLUMNS} FROM tracked_symbols WHERE symbol = %(symbol)s"

SELECT_SYMBOLS = f"""
SELECT {SYMBOL_COLUMNS} FROM tracked_symbols
WHERE (%(active)s::boolean IS NULL OR active = %(active)s::boolean)
  AND (%(asset_class)s::text IS NULL OR asset_class = %(asset_class)s::text)
ORDER BY symbol
"""

# COALESCE keeps a field the request left out; updated_at moves only when something changed.
UPDATE_SYMBOL = f"""
UPDATE tracked_symbols SET
    active = coalesce(%(active)s::boolean, active),
    asset_class = coalesce(%(asset_class)s::text, asset_class),
    timeframes = coalesce(%(timeframes)s::text[], timeframes),
    updated_at = CASE
        WHEN (coalesce(%(active)s::boolean, active), coalesce(%(asset_class)s::text, asset_class),
              coalesce(%(timeframes)s::text[], timeframes))
             IS DISTINCT FROM (active, asset_class, timeframes)
        THEN now() ELSE updated_at END
WHERE symbol = %(symbol)s
RETURNING {SYMBOL_COLUMNS}
"""

DEACTIVATE_SYMBOL = f"""
UPDATE tracked_symbols
SET active = false, updated_at = CASE WHEN active THEN now() ELSE updated_at END
WHERE symbol = %(symbol)s
RETURNING {SYMBOL_COLUMNS}
"""

SELECT_TIMEFRAME_COUNTS = """
SELECT timeframe,
       count(*) AS record_count,
       count(*) FILTER (WHERE validated) AS validated_count,
       min(time) AS first,
       max(time) AS last
FROM bars
WHERE symbol = %(symbol)s
GROUP BY timeframe
"""

# The trading day a daily bar belongs to: Polygon stamps stock daily bars at midnight New York
# time and crypto daily bars at midnight UTC, so each is read in its own zone.
SELECT_DAILY_BAR_DAYS = """
SELECT DISTINCT (time AT TIME ZONE %(zone)s)::date AS day
FROM bars
WHERE symbol = %(symbol)s AND timeframe = '1d'
ORDER BY day
"""


def insert_symbol(
    conn: Connection, *, symbol: str, asset_class: str, timeframes: list[str]
) -> TrackedSymbol:
    """Track a new symbol; Conflict when it is already tracked (active or not)."""
    params = {"symbol": symbol, "asset_class": asset_class, "timeframes": timeframes}
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
            row = cur.execute(INSERT_SYMBOL, params).fetchone()
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"{symbol} is already tracked; use PUT /api/v1/admin/symbols/{symbol} to change "
            "or reactivate it",
            details={"symbol": symbol},
        ) from None
    assert row is not None
    return row


def get_symbol(conn: Connection, symbol: str) -> TrackedSymbol | None:
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(SELECT_SYMBOL, {"symbol": symbol}).fetchone()


def list_symbols(
    conn: Connection, *, active: bool | None = None, asset_class: str | None = None
) -> list[TrackedSymbol]:
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(
            SELECT_SYMBOLS, {"active": active, "asset_class": asset_class}
        ).fetchall()


def update_symbol(
    conn: Connection,
    symbol: str,
    *,
    active: bool | None = None,
    asset_class: str | None = None,
    timeframes: list[str] | None = None,
) -> TrackedSymbol | None:
    """Change the given fields; None when the symbol is not tracked."""
    params = {
        "symbol": symbol,
        "active": active,
        "asset_class": asset_class,
        "timeframes": timeframes,
    }
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(UPDATE_SYMBOL, params).fetchone()


def deactivate_symbol(conn: Connection, symbol: str) -> TrackedSymbol | None:
    """Stop tracking a symbol, keeping its bars and history; None when it is not tracked."""
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(DEACTIVATE_SYMBOL, {"symbol": symbol}).fetchone()


def get_timeframe_counts(conn: Connection, symbol: str) -> list[TimeframeCounts]:
    with conn.cursor(row_factory=class_row(TimeframeCounts)) as cur:
        return cur.execute(SELECT_TIMEFRAME_COUNTS, {"symbol": symbol}).fetchall()


def get_daily_bar_days(conn: Connection, symbol: str, *, zone: str) -> list[date]:
    """The distinct days (in `zone`) that hold a `1d` bar of `symbol`, oldest first."""
    rows = conn.execute(SELECT_DAILY_BAR_DAYS, {"symbol": symbol, "zone": zone}).fetchall()
    return [row[0] for row in rows]
