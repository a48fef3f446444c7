"""Plain factory functions for test data."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import sql

from chalicelib import db
from chalicelib.keys import service as keys_service
from chalicelib.keys.models import CreatedKey
from chalicelib.symbols import repository as symbols_repository
from chalicelib.symbols.models import TrackedSymbol

_sequence = itertools.count(1)


def make_key(conn: db.Connection, **overrides: Any) -> CreatedKey:
    options: dict[str, Any] = {"name": f"test-key-{next(_sequence)}", "scopes": ["read"]}
    options.update(overrides)
    return keys_service.create_key(conn, **options)


def make_admin_key(conn: db.Connection, **overrides: Any) -> CreatedKey:
    return make_key(conn, scopes=["read", "admin"], **overrides)


def make_symbol(
    conn: db.Connection,
    symbol: str = "AAPL",
    *,
    asset_class: str = "stock",
    timeframes: list[str] | None = None,
    **overrides: Any,
) -> TrackedSymbol:
    """A tracked symbol; `overrides` set other columns (active, backfill_status, ...)."""
    row = symbols_repository.insert_symbol(
        conn, symbol=symbol, asset_class=asset_class, timeframes=timeframes or ["1d"]
    )
    if not overrides:
        return row
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in overrides
    )
    conn.execute(
        sql.SQL("UPDATE tracked_symbols SET {} WHERE symbol = %(symbol)s").format(assignments),
        {**overrides, "symbol": symbol},
    )
    updated = symbols_repository.get_symbol(conn, symbol)
    assert updated is not None
    return updated


def make_bars(
    conn: db.Connection,
    symbol: str,
    times: list[datetime],
    *,
    timeframe: str = "1d",
    price: float = 100.0,
    validated: bool | list[bool] = True,
    flags: list[str] | None = None,
) -> None:
    """One bar per start time, prices rising by a cent per bar so each is recognisable."""
    validity = validated if isinstance(validated, list) else [validated] * len(times)
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap,
                              trades, validated, flags)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    symbol,
                    timeframe,
                    at,
                    price + i / 100,
                    price + i / 100 + 1,
                    price + i / 100 - 1,
                    price + i / 100 + 0.5,
                    1000.0 + i,
                    price + i / 100,
                    10 + i,
                    ok,
                    flags or [],
                )
                for i, (at, ok) in enumerate(zip(times, validity, strict=True))
            ],
        )


def daily_times(start: date, days: int, *, hour: int = 5) -> list[datetime]:
    """Start times of daily bars on `days` consecutive calendar days (05:00 UTC = midnight in
    New York in winter, where Polygon stamps stock daily bars)."""
    return [
        datetime.combine(start + timedelta(days=n), time(hour), tzinfo=UTC) for n in range(days)
    ]
