"""All SQL the backfill runs: bar and split upserts, bars built from stored ones, run history,
per-(symbol, timeframe) state and the symbol's roll-up. Functions take a connection and never
commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from functools import cache
from itertools import starmap
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.backfill.models import (
    BackfillState,
    BarExtent,
    RecentBar,
    StoredSplit,
    TrackedSymbol,
)
from chalicelib.backfill.validation import flag_names, is_validated
from chalicelib.polygon import PolygonBar

Connection = psycopg.Connection[Any]

StagedBar = tuple[int, float, float, float, float, float, float | None, int | None, int]
"""(t ms UTC, open, high, low, close, volume, vwap, trades, flag mask), as staged by COPY."""

SYMBOL_COLUMNS = "symbol, asset_class, timeframes, active"

SELECT_ACTIVE_SYMBOLS = f"""
SELECT {SYMBOL_COLUMNS} FROM tracked_symbols WHERE active ORDER BY symbol
"""

SELECT_SYMBOLS = f"""
SELECT {SYMBOL_COLUMNS} FROM tracked_symbols WHERE symbol = ANY(%(symbols)s) ORDER BY symbol
"""

STATE_COLUMNS = "symbol, timeframe, status, last_backfill, last_error, last_run_id, stored_prices"

SELECT_STATE = f"""
SELECT {STATE_COLUMNS} FROM backfill_state
WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
"""

SELECT_STATES = f"""
SELECT {STATE_COLUMNS} FROM backfill_state WHERE symbol = ANY(%(symbols)s)
ORDER BY symbol, timeframe
"""

# Two index probes on the primary key (min and max are answered from either end of it).
SELECT_BAR_EXTENT = """
SELECT min(time) AS oldest, max(time) AS newest FROM bars
WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
"""

SELECT_BARS_BEFORE = """
SELECT time, close, volume, validated FROM bars
WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s AND time < %(before)s
ORDER BY time DESC
LIMIT %(limit)s
"""

INSERT_RUN = """
INSERT INTO backfill_runs (symbol, timeframe, status, started_at)
VALUES (%(symbol)s, %(timeframe)s, 'in_progress', %(started_at)s)
RETURNING id
"""

FINISH_RUN = """
UPDATE backfill_runs
SET status = %(status)s, finished_at = %(finished_at)s, range_start = %(range_start)s,
    range_end = %(range_end)s, bars_written = %(bars_written)s,
    provider_requests = %(provider_requests)s, error = %(error)s
WHERE id = %(run_id)s
"""

# The previous error stays visible while a retry is running; only a success clears it.
MARK_IN_PROGRESS = """
INSERT INTO backfill_state (symbol, timeframe, status, last_run_id)
VALUES (%(symbol)s, %(timeframe)s, 'in_progress', %(run_id)s)
ON CONFLICT (symbol, timeframe) DO UPDATE
SET status = 'in_progress', last_run_id = EXCLUDED.last_run_id, updated_at = now()
"""

# A completed run has written traded prices: every run fetches them, and a unit that still
# held split-adjusted ones (see migration 0009) was re-fetched whole.
MARK_COMPLETED = """
INSERT INTO backfill_state (symbol, timeframe, status, last_backfill, last_run_id)
VALUES (%(symbol)s, %(timeframe)s, 'completed', %(finished_at)s, %(run_id)s)
ON CONFLICT (symbol, timeframe) DO UPDATE
SET status = 'completed', last_backfill = EXCLUDED.last_backfill, last_error = NULL,
    last_run_id = EXCLUDED.last_run_id, stored_prices = 'unadjusted', updated_at = now()
"""

MARK_FAILED = """
INSERT INTO backfill_state (symbol, timeframe, status, last_error, last_run_id)
VALUES (%(symbol)s, %(timeframe)s, 'failed', %(error)s, %(run_id)s)
ON CONFLICT (symbol, timeframe) DO UPDATE
SET status = 'failed', last_error = EXCLUDED.last_error, last_run_id = EXCLUDED.last_run_id,
    updated_at = now()
"""

# Taken first, so the roll-up below reads every other timeframe's committed state: two units of
# one symbol finishing at once then roll up one after the other, the second seeing the first.
# NO KEY UPDATE, not UPDATE: it must not conflict with the key-share lock each unit's
# backfill_state foreign key already holds on this row, or two units deadlock.
LOCK_SYMBOL = "SELECT 1 FROM tracked_symbols WHERE symbol = %(symbol)s FOR NO KEY UPDATE"

# The symbol's status over the timeframes it tracks now: in_progress if any is running, else
# failed if any failed, else completed once every one has completed, else pending. Its
# last_backfill is the stalest timeframe's (null until each has completed once); its
# last_error is the newest failure, prefixed with the timeframe.
ROLL_UP_SYMBOL = """
UPDATE tracked_symbols AS ts
SET backfill_status = rollup.status, last_backfill = rollup.last_backfill,
    last_error = rollup.last_error, updated_at = now()
FROM (
    SELECT s.symbol,
        CASE
            WHEN bool_or(st.status = 'in_progress') THEN 'in_progress'
            WHEN bool_or(st.status = 'failed') THEN 'failed'
            WHEN count(*) FILTER (WHERE st.status = 'completed') = cardinality(s.timeframes)
                THEN 'completed'
            ELSE 'pending'
        END AS status,
        CASE
            WHEN count(st.last_backfill) = cardinality(s.timeframes) THEN min(st.last_backfill)
        END AS last_backfill,
        (array_agg(st.timeframe || ': ' || st.last_error ORDER BY st.updated_at DESC)
            FILTER (WHERE st.status = 'failed'))[1] AS last_error
    FROM tracked_symbols AS s
    LEFT JOIN backfill_state AS st ON st.symbol = s.symbol AND st.timeframe = ANY(s.timeframes)
    WHERE s.symbol = %(symbol)s
    GROUP BY s.symbol, s.timeframes
) AS rollup
WHERE ts.symbol = rollup.symbol
"""

# The staging table lives as long as the session and empties itself at each commit; it is also
# truncated before each batch, for callers whose batches share one outer transaction. Staging
# holds only what varies per bar: symbol and timeframe are constants of the upsert, and the
# time travels as integer milliseconds, which keeps the COPY stream small and spares Python a
# datetime per bar. `validated` and `flags` come from validation's own functions (see
# `_stored_flags`), so the rule is never restated in SQL.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS bars_staging (
    t bigint NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    vwap double precision,
    trades integer,
    validated boolean NOT NULL,
    flags text[] NOT NULL
) ON COMMIT DELETE ROWS
"""
STAGING_TYPES = [
    "int8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "int4",
    "bool",
    "text[]",
]
TRUNCATE_STAGING = "TRUNCATE bars_staging"
COPY_STAGING = """
COPY bars_staging (t, open, high, low, close, volume, vwap, trades, validated, flags)
FROM STDIN (FORMAT BINARY)
"""

# Writers of one (symbol, timeframe) take turns: the newest stored bar read under this lock
# stays the newest until the transaction ends, so the bars after it can be COPYed directly.
LOCK_UNIT = "SELECT pg_advisory_xact_lock(hashtextextended(%(unit)s, 0))"

SELECT_NEWEST_MS = """
SELECT (extract(epoch FROM max(time)) * 1000)::bigint FROM bars
WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
"""

COPY_NEW_BARS = """
COPY bars (symbol, timeframe, time, open, high, low, close, volume, vwap, trades, validated,
           flags)
FROM STDIN (FORMAT BINARY)
"""
NEW_BAR_TYPES = [
    "text",
    "text",
    "timestamptz",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "int4",
    "bool",
    "text[]",
]

# One statement moves the staged bars in. OHLCV, vwap, trades, validated and flags are all
# updated on conflict, and a row whose values did not change is left alone (no new tuple, no
# WAL), so re-running a backfill over the same range writes nothing.
UPSERT_STAGED_BARS = """
INSERT INTO bars AS b (
    symbol, timeframe, time, open, high, low, close, volume, vwap, trades, validated, flags
)
SELECT
    %(symbol)s, %(timeframe)s,
    timestamptz '1970-01-01 00:00:00+00' + s.t * interval '1 millisecond',
    s.open, s.high, s.low, s.close, s.volume, s.vwap, s.trades, s.validated, s.flags
FROM bars_staging AS s
ON CONFLICT (symbol, timeframe, time) DO UPDATE
SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, vwap = EXCLUDED.vwap, trades = EXCLUDED.trades,
    validated = EXCLUDED.validated, flags = EXCLUDED.flags, updated_at = now()
WHERE (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades, b.validated, b.flags)
    IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                      EXCLUDED.volume, EXCLUDED.vwap, EXCLUDED.trades, EXCLUDED.validated,
                      EXCLUDED.flags)
"""


# A split seen again with the same ratio rewrites nothing (re-runs and redelivered messages see
# the same splits); a corrected ratio from the provider replaces the stored one.
UPSERT_SPLIT = """
INSERT INTO splits (symbol, execution_date, split_from, split_to)
VALUES (%(symbol)s, %(execution_date)s, %(split_from)s, %(split_to)s)
ON CONFLICT (symbol, execution_date) DO UPDATE
SET split_from = EXCLUDED.split_from, split_to = EXCLUDED.split_to
WHERE (splits.split_from, splits.split_to)
    IS DISTINCT FROM (EXCLUDED.split_from, EXCLUDED.split_to)
"""

SELECT_SPLITS_OF = """
SELECT execution_date, split_from, split_to FROM splits
WHERE symbol = %(symbol)s AND execution_date >= %(since)s
ORDER BY execution_date
"""


# A coarser timeframe built from the stored, validated bars of a finer one: open = first,
# high = max, low = min, close = last, volume = sum, vwap weighted by the volume of the bars
# that have one, trades = sum of the known counts. One hash aggregate over the range, then two
# primary-key lookups per bucket for its open and close.
_SELECT_DERIVED_BARS = """
SELECT (extract(epoch FROM k.bucket) * 1000)::bigint AS t, f.open AS o, k.h, k.l,
       z.close AS c, k.v, k.vw, k.n
FROM (
    SELECT {bucket} AS bucket, min(time) AS first_time, max(time) AS last_time,
           max(high) AS h, min(low) AS l, sum(volume) AS v,
           sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
             / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vw,
           sum(trades) AS n
    FROM {bars}
    WHERE symbol = %(symbol)s AND timeframe = %(base)s AND validated
      AND time >= %(start_at)s AND time < %(end_before)s
    GROUP BY 1
) AS k
JOIN {bars} AS f ON f.symbol = %(symbol)s AND f.timeframe = %(base)s AND f.time = k.first_time
JOIN {bars} AS z ON z.symbol = %(symbol)s AND z.timeframe = %(base)s AND z.time = k.last_time
ORDER BY k.bucket
"""
# N-minute buckets from midnight UTC, of traded prices (no split takes effect inside a day). N
# divides an hour, so they fall on the same instants on the New York clock, whose offset from
# UTC is whole hours.
SELECT_DERIVED_MINUTE_BARS = _SELECT_DERIVED_BARS.format(
    bars="bars",
    bucket="date_bin(make_interval(mins => %(minutes)s), time, timestamptz '2000-01-01 00:00+00')",
)
# Weeks from Sunday midnight on the market's clock (1970-01-04 was a Sunday), of days in
# today's shares: a week can hold a split, and its days must share one basis before they are
# compared and summed.
SELECT_DERIVED_WEEK_BARS = _SELECT_DERIVED_BARS.format(
    bars="adjusted_bars",
    bucket="date_bin('7 days', time AT TIME ZONE %(zone)s, timestamp '1970-01-04')"
    " AT TIME ZONE %(zone)s",
)


def list_active_symbols(conn: Connection) -> list[TrackedSymbol]:
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(SELECT_ACTIVE_SYMBOLS).fetchall()


def get_symbols(conn: Connection, symbols: Sequence[str]) -> list[TrackedSymbol]:
    """The named symbols that are tracked (active or not), by symbol."""
    with conn.cursor(row_factory=class_row(TrackedSymbol)) as cur:
        return cur.execute(SELECT_SYMBOLS, {"symbols": list(symbols)}).fetchall()


def get_state(conn: Connection, symbol: str, timeframe: str) -> BackfillState | None:
    with conn.cursor(row_factory=class_row(BackfillState)) as cur:
        return cur.execute(SELECT_STATE, {"symbol": symbol, "timeframe": timeframe}).fetchone()


def list_states(conn: Connection, symbols: Sequence[str]) -> list[BackfillState]:
    with conn.cursor(row_factory=class_row(BackfillState)) as cur:
        return cur.execute(SELECT_STATES, {"symbols": list(symbols)}).fetchall()


def get_bar_extent(conn: Connection, symbol: str, timeframe: str) -> BarExtent:
    with conn.cursor(row_factory=class_row(BarExtent)) as cur:
        row = cur.execute(SELECT_BAR_EXTENT, {"symbol": symbol, "timeframe": timeframe}).fetchone()
    assert row is not None  # an aggregate always returns one row
    return row


def list_bars_before(
    conn: Connection, symbol: str, timeframe: str, *, before: datetime, limit: int
) -> list[RecentBar]:
    """Up to `limit` stored bars that start before `before`, newest first."""
    params = {"symbol": symbol, "timeframe": timeframe, "before": before, "limit": limit}
    with conn.cursor(row_factory=class_row(RecentBar)) as cur:
        return cur.execute(SELECT_BARS_BEFORE, params).fetchall()


def insert_run(conn: Connection, *, symbol: str, timeframe: str, started_at: datetime) -> int:
    params = {"symbol": symbol, "timeframe": timeframe, "started_at": started_at}
    row = conn.execute(INSERT_RUN, params).fetchone()
    assert row is not None
    run_id: int = row[0]
    return run_id


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    finished_at: datetime,
    range_start: date | None,
    range_end: date | None,
    bars_written: int,
    provider_requests: int,
    error: str | None,
) -> None:
    conn.execute(
        FINISH_RUN,
        {
            "run_id": run_id,
            "status": status,
            "finished_at": finished_at,
            "range_start": range_start,
            "range_end": range_end,
            "bars_written": bars_written,
            "provider_requests": provider_requests,
            "error": error,
        },
    )


def mark_in_progress(conn: Connection, *, symbol: str, timeframe: str, run_id: int) -> None:
    conn.execute(MARK_IN_PROGRESS, {"symbol": symbol, "timeframe": timeframe, "run_id": run_id})


def mark_completed(
    conn: Connection, *, symbol: str, timeframe: str, run_id: int, finished_at: datetime
) -> None:
    conn.execute(
        MARK_COMPLETED,
        {"symbol": symbol, "timeframe": timeframe, "run_id": run_id, "finished_at": finished_at},
    )


def mark_failed(conn: Connection, *, symbol: str, timeframe: str, run_id: int, error: str) -> None:
    conn.execute(
        MARK_FAILED, {"symbol": symbol, "timeframe": timeframe, "run_id": run_id, "error": error}
    )


def roll_up_symbol_status(conn: Connection, symbol: str) -> None:
    """Recompute tracked_symbols.backfill_status, last_backfill and last_error for `symbol`."""
    conn.execute(LOCK_SYMBOL, {"symbol": symbol})
    conn.execute(ROLL_UP_SYMBOL, {"symbol": symbol})


def upsert_split(
    conn: Connection, *, symbol: str, execution_date: date, split_from: float, split_to: float
) -> bool:
    """Record a split of `symbol`, keyed by (symbol, execution date) as the table is. True when
    a row was inserted or its ratio changed; False when it was already stored as it is."""
    cursor = conn.execute(
        UPSERT_SPLIT,
        {
            "symbol": symbol,
            "execution_date": execution_date,
            "split_from": split_from,
            "split_to": split_to,
        },
    )
    return cursor.rowcount > 0


def list_splits_of(conn: Connection, symbol: str, *, since: date) -> list[StoredSplit]:
    """The stored splits of `symbol` executed on or after `since`, oldest first."""
    with conn.cursor(row_factory=class_row(StoredSplit)) as cur:
        return cur.execute(SELECT_SPLITS_OF, {"symbol": symbol, "since": since}).fetchall()


def list_derived_bars(
    conn: Connection,
    *,
    symbol: str,
    base: str,
    start_at: datetime,
    end_before: datetime,
    minutes: int | None = None,
    zone: str | None = None,
) -> list[PolygonBar]:
    """Bars built from `symbol`'s stored, validated `base` bars with start_at <= time <
    end_before, oldest first: `minutes`-minute buckets of traded prices, or weeks on `zone`'s
    clock in today's shares."""
    params = {
        "symbol": symbol,
        "base": base,
        "start_at": start_at,
        "end_before": end_before,
        "minutes": minutes,
        "zone": zone,
    }
    sql = SELECT_DERIVED_MINUTE_BARS if minutes is not None else SELECT_DERIVED_WEEK_BARS
    return list(starmap(PolygonBar, conn.execute(sql, params).fetchall()))


def upsert_bars(conn: Connection, *, symbol: str, timeframe: str, bars: Iterable[StagedBar]) -> int:
    """Write `bars` for one (symbol, timeframe): insert new bars, update changed ones.

    Bars newer than the newest stored bar cannot conflict, so they are COPYed straight into
    `bars`; the rest (a re-fetched last bar, a full re-backfill) are staged with a binary COPY
    and merged in one `INSERT … ON CONFLICT DO UPDATE`. A per-unit advisory lock, held to the
    end of the caller's transaction, keeps another writer from adding bars between reading the
    newest one and the COPY. Returns how many rows were inserted or changed (unchanged rows are
    skipped). The bars must be unique by time.
    """
    # A savepoint inside the caller's transaction: a failed COPY or merge leaves that
    # transaction usable for recording the failure, and the lock lives until the caller ends.
    with conn.transaction():
        conn.execute(LOCK_UNIT, {"unit": f"{symbol}/{timeframe}"})
        row = conn.execute(SELECT_NEWEST_MS, {"symbol": symbol, "timeframe": timeframe}).fetchone()
        newest_ms = row[0] if row else None
        new_bars: list[StagedBar] = []
        known_bars: list[StagedBar] = []
        if newest_ms is None:
            new_bars = list(bars)
        else:
            for bar in bars:
                (new_bars if bar[0] > newest_ms else known_bars).append(bar)
        written = 0
        if known_bars:
            written += _merge_staged(conn, symbol=symbol, timeframe=timeframe, bars=known_bars)
        if new_bars:
            written += _copy_new(conn, symbol=symbol, timeframe=timeframe, bars=new_bars)
    return written


@cache
def _stored_flags(mask: int) -> tuple[bool, list[str]]:
    """The `validated` and `flags` columns of a bar with flag mask `mask`, from validation's
    functions. Few distinct masks occur, so each is worked out once (the list is never
    mutated: it is only written to COPY)."""
    return is_validated(mask), flag_names(mask)


def _merge_staged(conn: Connection, *, symbol: str, timeframe: str, bars: list[StagedBar]) -> int:
    conn.execute(CREATE_STAGING)
    conn.execute(TRUNCATE_STAGING)
    with conn.cursor() as cur:
        with cur.copy(COPY_STAGING) as copy:
            copy.set_types(STAGING_TYPES)
            write_row = copy.write_row
            for *values, mask in bars:
                write_row((*values, *_stored_flags(mask)))
        cur.execute(UPSERT_STAGED_BARS, {"symbol": symbol, "timeframe": timeframe})
        return cur.rowcount


def _copy_new(conn: Connection, *, symbol: str, timeframe: str, bars: list[StagedBar]) -> int:
    # fromtimestamp is C all the way and measured over twice as fast as epoch + timedelta;
    # milliseconds / 1000 rounds back to the exact microsecond.
    from_timestamp = datetime.fromtimestamp
    with conn.cursor() as cur, cur.copy(COPY_NEW_BARS) as copy:
        copy.set_types(NEW_BAR_TYPES)
        write_row = copy.write_row
        for t, open_, high, low, close, volume, vwap, trades, mask in bars:
            write_row(
                (
                    symbol,
                    timeframe,
                    from_timestamp(t / 1000, UTC),
                    open_,
                    high,
                    low,
                    close,
                    volume,
                    vwap,
                    trades,
                    *_stored_flags(mask),
                )
            )
    return len(bars)
