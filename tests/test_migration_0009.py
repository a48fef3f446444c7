"""Migration 0009 (bars stored as traded) applied to a warehouse that already holds
split-adjusted bars: it rewrites no bar, reads go on while it runs, and the units that exist
are marked to be served as stored until their next backfill converts them."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from chalicelib.config import MIGRATIONS_DIR
from chalicelib.migrations import run_migrations

BARS = 5_000


@pytest.fixture
def warehouse_at_0008(empty_database_url: str, tmp_path: Path) -> str:
    """A database migrated up to 0008, holding AAPL's minute bars (one backfilled unit) and a
    split of AAPL in the middle of them."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= 8:
            shutil.copy(path, directory)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        run_migrations(conn, directory=directory)
        conn.execute("INSERT INTO tracked_symbols (symbol, asset_class) VALUES ('AAPL', 'stock')")
        conn.execute(
            """
            INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, validated)
            SELECT 'AAPL', '1m', t, 10, 11, 9, 10.5, 100, true
            FROM generate_series(
                timestamptz '2024-01-01 00:00+00', timestamptz '2024-01-01 00:00+00'
                + (%s - 1) * interval '1 minute', interval '1 minute'
            ) AS t
            """,
            (BARS,),
        )
        conn.execute(
            "INSERT INTO backfill_state (symbol, timeframe, status)"
            " VALUES ('AAPL', '1m', 'completed')"
        )
        conn.execute(
            "INSERT INTO splits (symbol, execution_date, split_from, split_to)"
            " VALUES ('AAPL', '2024-01-10', 1, 4)"
        )
    return empty_database_url


def storage_of_bars(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_relation_filenode('bars')").fetchone()
    assert row is not None
    return int(row[0])


def test_0009_rewrites_no_bar_and_reads_go_on_while_it_runs(warehouse_at_0008: str) -> None:
    durations: list[float] = []
    stop = threading.Event()

    def read_continuously() -> None:
        # What a read does: the bars of a unit and the unit's backfill state.
        with psycopg.connect(warehouse_at_0008, autocommit=True) as reader:
            while not stop.is_set():
                started = time.perf_counter()
                reader.execute("SELECT count(*), sum(close) FROM bars WHERE symbol = 'AAPL'")
                reader.execute("SELECT status FROM backfill_state WHERE symbol = 'AAPL'")
                durations.append(time.perf_counter() - started)

    with psycopg.connect(warehouse_at_0008, autocommit=True) as conn:
        stored_in = storage_of_bars(conn)
        reader = threading.Thread(target=read_continuously)
        reader.start()
        try:
            time.sleep(0.2)
            reads_before = len(durations)
            started = time.perf_counter()
            summary = run_migrations(conn)
            took = time.perf_counter() - started
            time.sleep(0.2)
        finally:
            stop.set()
            reader.join(timeout=10)

        assert [name[:4] for name in summary.applied] == ["0009"]
        assert storage_of_bars(conn) == stored_in  # the table was not rewritten
        assert took < 2.0
        assert len(durations) > reads_before + 5  # reads went on through and after it
        assert max(durations) < 0.5  # no read waited on the migration's locks
        prices = conn.execute("SELECT stored_prices FROM backfill_state").fetchall()
        assert prices == [("split_adjusted",)]


def test_after_0009_existing_units_read_as_stored_and_new_ones_apply_splits(
    warehouse_at_0008: str,
) -> None:
    with psycopg.connect(warehouse_at_0008, autocommit=True) as conn:
        run_migrations(conn)
        conn.execute(
            "INSERT INTO backfill_state (symbol, timeframe, status)"
            " VALUES ('AAPL', '1d', 'pending')"
        )
        conn.execute(
            "INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, validated)"
            " VALUES ('AAPL', '1d', '2024-01-09 05:00+00', 10, 11, 9, 10.5, 100, true)"
        )

        def first_close(timeframe: str) -> tuple[float, float]:
            row = conn.execute(
                "SELECT close, volume FROM adjusted_bars WHERE symbol = 'AAPL'"
                " AND timeframe = %s ORDER BY time LIMIT 1",
                (timeframe,),
            ).fetchone()
            assert row is not None
            return float(row[0]), float(row[1])

        new_unit = conn.execute(
            "SELECT stored_prices FROM backfill_state WHERE timeframe = '1d'"
        ).fetchone()

        # The 1m unit holds split-adjusted prices already: served as stored, not divided again.
        assert first_close("1m") == (10.5, 100.0)
        # The new 1d unit holds traded prices: the bar before the split reads in today's shares.
        assert new_unit == ("unadjusted",)
        assert first_close("1d") == (10.5 / 4, 400.0)
