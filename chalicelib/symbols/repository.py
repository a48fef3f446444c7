"""All SQL for tracked symbols. Functions take a connection and never commit."""

from __future__ import annotations

from typing import Any

import psycopg

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
