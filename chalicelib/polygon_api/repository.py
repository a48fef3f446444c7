"""All SQL of the Polygon-compatible read API: stored bars read as they are or resampled into
larger buckets by PostgreSQL, one day's bar of every tracked symbol, and splits. Reads only
(the backfill writes the splits: `backfill/repository.py`); functions take a connection and
never commit.

The module stands apart from `marketdata/repository.py` because it reads bars in another shape
(Polygon's fields, epoch milliseconds, buckets computed in SQL) and the splits table, and shares
no query with the native endpoint.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import starmap
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.rows import class_row

from chalicelib.marketdata.repository import PRICE_RELATIONS

Connection = psycopg.Connection[Any]

BucketKind = Literal["minutes", "days", "weeks", "months"]
MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 1440


class AggRow(msgspec.Struct, frozen=True):
    """One served bar: window start in epoch ms, how many stored bars made it, and the times
    of its first and last stored bar (where the next page starts)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float | None
    n: int | None
    base_bars: int
    first_time: datetime
    last_time: datetime


class GroupedRow(msgspec.Struct, frozen=True):
    symbol: str
    asset_class: str
    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float | None
    n: int | None


class SplitRow(msgspec.Struct, frozen=True):
    symbol: str
    execution_date: date
    split_from: float
    split_to: float


# A stored timeframe read as it is. Bounds are always concrete; `after`/`before` carry the
# cursor (the far past/future when there is none), so one plan serves every page.
SELECT_STORED_AGGS = """
SELECT (extract(epoch FROM time) * 1000)::bigint AS t,
       open AS o, high AS h, low AS l, close AS c, volume AS v, vwap AS vw, trades AS n,
       1 AS base_bars, time AS first_time, time AS last_time
FROM {bars}
WHERE symbol = %(symbol)s
  AND timeframe = %(timeframe)s
  AND validated
  AND time >= %(start_at)s AND time < %(end_before)s
  AND time > %(after)s AND time < %(before)s
ORDER BY time {direction}
LIMIT %(limit)s
"""

# Buckets are computed on the wall clock of `zone` (New York for stocks, UTC for crypto): each
# row's local time is bucketed, and only the bucket turns back into an instant, so a New York
# day stays one bucket across a DST change. Each expression converts a row's time once: the
# conversion by zone name is the costliest step per row.
_LOCAL = "(b.time AT TIME ZONE %(zone)s)"
BUCKET_EXPRESSIONS: dict[BucketKind, str] = {
    # N-minute buckets where N divides a day: anchored at any local midnight.
    "minutes": f"date_bin(make_interval(mins => %(step)s), {_LOCAL}, timestamp '2000-01-01')",
    # N-day buckets counted from 1970-01-01, on local dates.
    "days": f"date_bin(make_interval(days => %(step)s), {_LOCAL}, timestamp '1970-01-01')",
    # N-week buckets starting on Sundays, counted from Sunday 1970-01-04.
    "weeks": f"date_bin(make_interval(days => 7 * %(step)s), {_LOCAL}, timestamp '1970-01-04')",
    # N-month buckets (quarters: 3, years: 12) counted from January of year 0, so quarters
    # start in January, April, July and October.
    "months": "make_timestamp(m.index / 12, m.index %% 12 + 1, 1, 0, 0, 0)",
}
# N-minute buckets where N divides an hour: the same on every clock whose offset from UTC is
# whole hours (New York's and UTC's are), so they are taken on the stored instants, with no
# conversion per row (an instant, not a local time: see `bucket_start`).
HOURLY_MINUTES = (
    "date_bin(make_interval(mins => %(step)s), b.time, timestamptz '2000-01-01 00:00+00')"
)
# N-minute buckets where N does not divide a day restart at each local midnight.
UNEVEN_MINUTES = f"date_bin(make_interval(mins => %(step)s), {_LOCAL}, date_trunc('day', {_LOCAL}))"
_MONTH_INDEX = (
    f"CROSS JOIN LATERAL (SELECT (((extract(year FROM {_LOCAL}) * 12 "
    f"+ extract(month FROM {_LOCAL}) - 1)::int / %(step)s) * %(step)s) AS index) AS m"
)

# open = first, high = max, low = min, close = last, volume = sum, vwap weighted by the volume
# of the bars that have one, trades = sum of the known counts. Plain aggregates over the rows
# (one hash aggregate, no sort of the rows); the first and last bar of each bucket are then two
# primary-key lookups for its open and close.
SELECT_RESAMPLED_AGGS = """
SELECT (extract(epoch FROM ({bucket_start})) * 1000)::bigint AS t,
       f.open AS o, k.h, k.l, z.close AS c, k.v, k.vw, k.n, k.base_bars, k.first_time,
       k.last_time
FROM (
    SELECT {bucket} AS bucket,
           min(b.time) AS first_time,
           max(b.time) AS last_time,
           max(b.high) AS h,
           min(b.low) AS l,
           sum(b.volume) AS v,
           sum(b.vwap * b.volume) FILTER (WHERE b.vwap IS NOT NULL)
             / nullif(sum(b.volume) FILTER (WHERE b.vwap IS NOT NULL), 0) AS vw,
           sum(b.trades)::bigint AS n,
           count(*)::int AS base_bars
    FROM {bars} AS b
    {month_join}
    WHERE b.symbol = %(symbol)s
      AND b.timeframe = %(timeframe)s
      AND b.validated
      AND b.time >= %(start_at)s AND b.time < %(end_before)s
      AND b.time > %(after)s AND b.time < %(before)s
    GROUP BY 1
) AS k
CROSS JOIN LATERAL (
    SELECT open FROM {bars}
    WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s AND time = k.first_time
    LIMIT 1
) AS f
CROSS JOIN LATERAL (
    SELECT close FROM {bars}
    WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s AND time = k.last_time
    LIMIT 1
) AS z
ORDER BY k.first_time {direction}
LIMIT %(limit)s
"""

# The daily bar of every active symbol tracked at 1d whose bar falls on `day` in its own
# market's zone (New York for stocks and ETFs, UTC for crypto).
_SELECT_GROUPED_DAILY = """
SELECT s.symbol, s.asset_class, (extract(epoch FROM b.time) * 1000)::bigint AS t,
       b.open AS o, b.high AS h, b.low AS l, b.close AS c, b.volume AS v, b.vwap AS vw,
       b.trades AS n
FROM tracked_symbols AS s
JOIN {bars} AS b
  ON b.symbol = s.symbol
 AND b.timeframe = '1d'
 AND b.time >= (%(day)s::date)::timestamp AT TIME ZONE (
        CASE WHEN s.asset_class = 'crypto' THEN 'UTC' ELSE 'America/New_York' END)
 AND b.time < (%(day)s::date + 1)::timestamp AT TIME ZONE (
        CASE WHEN s.asset_class = 'crypto' THEN 'UTC' ELSE 'America/New_York' END)
WHERE s.active
  AND b.validated
  AND (s.asset_class = 'crypto') = %(crypto)s
ORDER BY s.symbol
"""
SELECT_GROUPED_DAILY = {
    adjusted: _SELECT_GROUPED_DAILY.format(bars=relation)
    for adjusted, relation in PRICE_RELATIONS.items()
}

SELECT_SPLITS = """
SELECT symbol, execution_date, split_from, split_to
FROM splits
WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
  AND execution_date >= %(date_from)s AND execution_date <= %(date_to)s
  AND (%(reverse)s::boolean IS NULL OR (split_from > split_to) = %(reverse)s)
ORDER BY {order}
OFFSET %(offset)s
LIMIT %(limit)s
"""
SPLIT_ORDERS = {
    (False, False): "execution_date, symbol",
    (False, True): "execution_date DESC, symbol DESC",
    (True, False): "symbol, execution_date",
    (True, True): "symbol DESC, execution_date DESC",
}


def list_stored_aggs(
    conn: Connection,
    *,
    symbol: str,
    timeframe: str,
    start_at: datetime,
    end_before: datetime,
    after: datetime,
    before: datetime,
    descending: bool,
    limit: int,
    adjusted: bool,
) -> list[AggRow]:
    """Up to `limit` stored, validated bars of one timeframe, as they are (split-adjusted or,
    unless `adjusted`, as traded)."""
    query = SELECT_STORED_AGGS.format(
        bars=PRICE_RELATIONS[adjusted], direction="DESC" if descending else "ASC"
    )
    params = {
        "symbol": symbol,
        "timeframe": timeframe,
        "start_at": start_at,
        "end_before": end_before,
        "after": after,
        "before": before,
        "limit": limit,
    }
    # Tuples turned into rows by starmap: no Python call per row on the largest pages.
    return list(starmap(AggRow, conn.execute(query, params).fetchall()))


def list_resampled_aggs(
    conn: Connection,
    *,
    symbol: str,
    base_timeframe: str,
    zone: str,
    kind: BucketKind,
    step: int,
    start_at: datetime,
    end_before: datetime,
    after: datetime,
    before: datetime,
    descending: bool,
    limit: int,
    adjusted: bool,
) -> list[AggRow]:
    """Up to `limit` buckets of `step` `kind` built from the stored, validated `base_timeframe`
    bars with start_at <= time < end_before and after < time < before, split-adjusted before
    they are grouped (or, unless `adjusted`, as traded)."""
    bucket = BUCKET_EXPRESSIONS[kind]
    bucket_start = "k.bucket AT TIME ZONE %(zone)s"  # a local time back to its instant
    if kind == "minutes" and MINUTES_PER_HOUR % step == 0:
        bucket, bucket_start = HOURLY_MINUTES, "k.bucket"
    elif kind == "minutes" and MINUTES_PER_DAY % step:
        bucket = UNEVEN_MINUTES
    query = SELECT_RESAMPLED_AGGS.format(
        bars=PRICE_RELATIONS[adjusted],
        bucket=bucket,
        bucket_start=bucket_start,
        month_join=_MONTH_INDEX if kind == "months" else "",
        direction="DESC" if descending else "ASC",
    )
    params = {
        "symbol": symbol,
        "timeframe": base_timeframe,
        "zone": zone,
        "step": step,
        "start_at": start_at,
        "end_before": end_before,
        "after": after,
        "before": before,
        "limit": limit,
    }
    # Tuples turned into rows by starmap: no Python call per row on the largest pages.
    return list(starmap(AggRow, conn.execute(query, params).fetchall()))


def list_grouped_daily(
    conn: Connection, *, day: date, crypto: bool, adjusted: bool
) -> list[GroupedRow]:
    with conn.cursor(row_factory=class_row(GroupedRow)) as cur:
        params = {"day": day, "crypto": crypto}
        return cur.execute(SELECT_GROUPED_DAILY[adjusted], params).fetchall()


def list_splits(
    conn: Connection,
    *,
    symbol: str | None,
    date_from: date,
    date_to: date,
    reverse: bool | None,
    by_ticker: bool,
    descending: bool,
    offset: int,
    limit: int,
) -> list[SplitRow]:
    """Splits ordered by execution date (or ticker), from `offset` on."""
    query = SELECT_SPLITS.format(order=SPLIT_ORDERS[(by_ticker, descending)])
    params = {
        "symbol": symbol,
        "date_from": date_from,
        "date_to": date_to,
        "reverse": reverse,
        "offset": offset,
        "limit": limit,
    }
    with conn.cursor(row_factory=class_row(SplitRow)) as cur:
        return cur.execute(query, params).fetchall()
