"""The status counts: read from per-unit counts that triggers keep equal to a direct count of the
bars through every kind of write, and read without touching a single bar."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime

import psycopg
import pytest

from chalicelib.backfill import repository as backfill_repository
from chalicelib.backfill.validation import FLAG_BITS
from chalicelib.config import MIGRATIONS_DIR
from chalicelib.marketdata import repository, service
from chalicelib.migrations import run_migrations
from tests.factories import daily_times, make_bars, make_symbol

T0_MS = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp() * 1000)
MINUTE_MS = 60_000
SEVERE = FLAG_BITS["non_positive_price"]  # makes a bar not validated
MINOR = FLAG_BITS["price_jump"]  # flags a bar, which stays validated


def staged(first: int, count: int, *, mask: int = 0, price: float = 100.0):
    """`count` minute bars from minute `first` on, each flagged with `mask`."""
    return [
        (T0_MS + (first + i) * MINUTE_MS, price, price + 1, price - 1, price, 10.0, price, 7, mask)
        for i in range(count)
    ]


def direct_counts(conn) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(
        "SELECT symbol, timeframe, count(*), count(*) FILTER (WHERE validated) FROM bars"
        " GROUP BY symbol, timeframe"
    ).fetchall()
    return {(symbol, timeframe): (bars, validated) for symbol, timeframe, bars, validated in rows}


def kept_counts(conn) -> dict[tuple[str, str], tuple[int, int]]:
    """The maintained counts, without the units emptied by deletes (kept at zero)."""
    rows = conn.execute(
        "SELECT symbol, timeframe, bars, validated_bars FROM bar_counts WHERE bars <> 0"
    ).fetchall()
    return {(symbol, timeframe): (bars, validated) for symbol, timeframe, bars, validated in rows}


def assert_counts_exact(conn, expected: dict[tuple[str, str], tuple[int, int]]) -> None:
    assert direct_counts(conn) == expected
    assert kept_counts(conn) == expected
    assert repository.count_bars(conn) == (
        sum(bars for bars, _ in expected.values()),
        sum(validated for _, validated in expected.values()),
    )


def test_counts_follow_backfills_re_backfills_and_deletes(conn):
    write = backfill_repository.upsert_bars
    assert repository.count_bars(conn) == (0, 0)

    # First backfills: every bar is new (COPYed straight into bars); 3 of AAPL's are severe.
    write(conn, symbol="AAPL", timeframe="1m", bars=staged(0, 7) + staged(7, 3, mask=SEVERE))
    write(conn, symbol="MSFT", timeframe="1m", bars=staged(0, 4, mask=MINOR))
    write(conn, symbol="AAPL", timeframe="1d", bars=staged(0, 2))
    assert_counts_exact(
        conn, {("AAPL", "1m"): (10, 7), ("MSFT", "1m"): (4, 4), ("AAPL", "1d"): (2, 2)}
    )

    # A re-backfill merges stored bars (upserts) and COPYs new ones: three clean bars turn
    # severe, one severe bar is cleaned, one bar only changes price, and two bars are new.
    write(
        conn,
        symbol="AAPL",
        timeframe="1m",
        bars=staged(0, 3, mask=SEVERE)
        + staged(3, 1, price=101.0)
        + staged(4, 3)
        + staged(7, 1)
        + staged(8, 2, mask=SEVERE)
        + staged(10, 1, mask=MINOR)
        + staged(11, 1, mask=SEVERE),
    )
    # The same bars again: nothing changes, nothing is counted twice.
    write(conn, symbol="MSFT", timeframe="1m", bars=staged(0, 4, mask=MINOR))
    assert_counts_exact(
        conn, {("AAPL", "1m"): (12, 6), ("MSFT", "1m"): (4, 4), ("AAPL", "1d"): (2, 2)}
    )

    # Deletes by hand, including a whole unit, and inserts that are not the backfill's.
    conn.execute("DELETE FROM bars WHERE symbol = 'AAPL' AND timeframe = '1m' AND NOT validated")
    conn.execute(
        "DELETE FROM bars WHERE symbol = 'AAPL' AND timeframe = '1m' AND time >= %s",
        (datetime.fromtimestamp((T0_MS + 10 * MINUTE_MS) / 1000, UTC),),
    )
    conn.execute("DELETE FROM bars WHERE symbol = 'MSFT'")
    make_bars(conn, "IBM", daily_times(date(2024, 3, 4), 3), validated=[True, False, True])
    assert_counts_exact(
        conn, {("AAPL", "1m"): (5, 5), ("AAPL", "1d"): (2, 2), ("IBM", "1d"): (3, 2)}
    )

    # An update by hand that moves bars to another unit and flips their flag.
    conn.execute(
        "UPDATE bars SET symbol = 'IBM', validated = NOT validated"
        " WHERE symbol = 'AAPL' AND timeframe = '1d'"
    )
    assert_counts_exact(conn, {("AAPL", "1m"): (5, 5), ("IBM", "1d"): (5, 2)})

    conn.execute("TRUNCATE bars")
    assert conn.execute("SELECT count(*) FROM bar_counts").fetchone() == (0,)
    assert repository.count_bars(conn) == (0, 0)


def plan_relations(conn, query: str) -> set[str]:
    (plan,) = conn.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchone()
    found: set[str] = set()

    def walk(node):
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return found


def test_the_count_reads_the_unit_counts_not_the_bars(conn):
    assert plan_relations(conn, repository.COUNT_BARS) == {"bar_counts"}


def test_the_status_report_reads_no_bar(pinned_db):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 3, 4), 5))

    def bar_scans() -> tuple[int, int]:
        # This transaction's own scans of bars so far.
        row = pinned_db.execute(
            "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'bars'"
        ).fetchone()
        assert row is not None
        return row[0], row[1]

    before = bar_scans()
    report = service.pipeline_status(pinned_db)

    assert (report.bars, report.validated_bars) == (5, 5)
    assert bar_scans() == before


@pytest.fixture
def migrations_before_counts(tmp_path):
    """The real migrations up to the one before bar_counts."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0007":
            shutil.copy(path, directory / path.name)
    return directory


def test_the_migration_counts_the_bars_already_stored(empty_database_url, migrations_before_counts):
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        run_migrations(conn, directory=migrations_before_counts)
        make_bars(conn, "AAPL", daily_times(date(2024, 3, 4), 4), validated=[True, False] * 2)
        make_bars(conn, "AAPL", daily_times(date(2024, 3, 4), 2), timeframe="1h")
        make_bars(conn, "BTC-USD", daily_times(date(2024, 3, 4), 3), validated=False)

        run_migrations(conn)

        assert_counts_exact(
            conn, {("AAPL", "1d"): (4, 2), ("AAPL", "1h"): (2, 2), ("BTC-USD", "1d"): (3, 0)}
        )
        make_bars(conn, "BTC-USD", daily_times(date(2024, 3, 7), 1))
        assert repository.count_bars(conn) == (10, 5)
