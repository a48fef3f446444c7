from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from chalicelib.backfill import repository
from chalicelib.backfill.models import BarExtent, RecentBar
from chalicelib.backfill.validation import FLAG_BITS
from tests.factories import make_symbol

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
MINUTE_MS = 60_000
STARTED = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)


def staged(count: int, *, price: float = 100.0, mask: int = 0) -> list[repository.StagedBar]:
    return [
        (T0_MS + i * MINUTE_MS, price, price + 1, price - 1, price + 0.5, 10.5, price, 7, mask)
        for i in range(count)
    ]


def stored(conn, symbol="AAPL", timeframe="1m"):
    return conn.execute(
        """
        SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
        FROM bars WHERE symbol = %s AND timeframe = %s ORDER BY time
        """,
        (symbol, timeframe),
    ).fetchall()


def test_upsert_inserts_staged_bars_with_times_and_flags(conn):
    bars = staged(2)
    bars[1] = bars[1][:-1] + (FLAG_BITS["price_jump"] | FLAG_BITS["non_positive_price"],)

    written = repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=bars)

    assert written == 2
    assert stored(conn) == [
        (T0, 100.0, 101.0, 99.0, 100.5, 10.5, 100.0, 7, True, []),
        (
            T0 + timedelta(minutes=1),
            100.0,
            101.0,
            99.0,
            100.5,
            10.5,
            100.0,
            7,
            False,
            ["non_positive_price", "price_jump"],
        ),
    ]


def test_upsert_keeps_missing_vwap_and_trades_as_null(conn):
    bar = (T0_MS, 1.0, 1.0, 1.0, 1.0, 0.25, None, None, 0)

    repository.upsert_bars(conn, symbol="BTC", timeframe="1m", bars=[bar])

    assert stored(conn, "BTC") == [(T0, 1.0, 1.0, 1.0, 1.0, 0.25, None, None, True, [])]


def test_upsert_updates_prices_volume_and_flags_on_conflict(conn):
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(3))
    changed = staged(3, price=25.0, mask=FLAG_BITS["volume_spike"])[1:]

    written = repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=changed)

    rows = stored(conn)
    assert written == 2
    assert rows[0][1:] == (100.0, 101.0, 99.0, 100.5, 10.5, 100.0, 7, True, [])
    assert rows[1][1:] == (25.0, 26.0, 24.0, 25.5, 10.5, 25.0, 7, True, ["volume_spike"])
    assert rows[2][1:] == (25.0, 26.0, 24.0, 25.5, 10.5, 25.0, 7, True, ["volume_spike"])


def test_upsert_skips_rows_that_did_not_change(conn):
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(5))

    written = repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(5))

    assert written == 0
    assert len(stored(conn)) == 5


def test_upsert_keeps_symbols_and_timeframes_apart(conn):
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(2))
    repository.upsert_bars(conn, symbol="AAPL", timeframe="5m", bars=staged(1, price=50.0))
    repository.upsert_bars(conn, symbol="MSFT", timeframe="1m", bars=staged(1, price=70.0))

    assert [row[1] for row in stored(conn, "AAPL", "1m")] == [100.0, 100.0]
    assert [row[1] for row in stored(conn, "AAPL", "5m")] == [50.0]
    assert [row[1] for row in stored(conn, "MSFT", "1m")] == [70.0]


def test_a_failed_transaction_leaves_no_staged_bar_behind(conn):
    def fail_after_writing() -> None:
        with conn.transaction():
            repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(10))
            raise RuntimeError("the run failed after writing")

    with pytest.raises(RuntimeError):
        fail_after_writing()

    assert stored(conn) == []
    # The session's staging table starts the next batch empty.
    assert repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(1)) == 1
    assert len(stored(conn)) == 1


def test_upsert_refuses_duplicate_new_times_in_one_batch(conn):
    with pytest.raises(psycopg.errors.UniqueViolation):
        repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(2) + staged(1))


def test_upsert_refuses_duplicate_stored_times_in_one_batch(conn):
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(2))
    twice = staged(2, price=200.0) + staged(1, price=300.0)

    with pytest.raises(psycopg.errors.CardinalityViolation):
        repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=twice)


def test_new_bars_are_copied_and_stored_ones_merged_in_one_call(conn):
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=staged(3))
    changed_last = [bar[:4] + (bar[4] + 1.0,) + bar[5:] for bar in staged(5)[2:]]

    written = repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=changed_last)

    assert written == 3  # the re-fetched third bar changed; the fourth and fifth are new
    closes = conn.execute(
        "SELECT close FROM bars WHERE symbol = 'AAPL' AND timeframe = '1m' ORDER BY time"
    ).fetchall()
    originals = [bar[4] for bar in staged(5)]
    assert [c for (c,) in closes] == [originals[0], originals[1]] + [c + 1.0 for c in originals[2:]]


def test_bar_extent_and_bars_before(conn):
    assert repository.get_bar_extent(conn, "AAPL", "1m") == BarExtent(None, None)
    bars = staged(5)
    bars = [bar[:5] + (float(i),) + bar[6:] for i, bar in enumerate(bars)]
    repository.upsert_bars(conn, symbol="AAPL", timeframe="1m", bars=bars)

    extent = repository.get_bar_extent(conn, "AAPL", "1m")
    before = repository.list_bars_before(
        conn, "AAPL", "1m", before=T0 + timedelta(minutes=3), limit=2
    )

    assert extent == BarExtent(T0, T0 + timedelta(minutes=4))
    assert before == [
        RecentBar(T0 + timedelta(minutes=2), 100.5, 2.0, True),
        RecentBar(T0 + timedelta(minutes=1), 100.5, 1.0, True),
    ]


def state_row(conn, symbol="AAPL", timeframe="1d"):
    return repository.get_state(conn, symbol, timeframe)


def symbol_row(conn, symbol="AAPL"):
    return conn.execute(
        "SELECT backfill_status, last_backfill, last_error FROM tracked_symbols WHERE symbol = %s",
        (symbol,),
    ).fetchone()


def test_run_history_row_from_start_to_finish(conn):
    run_id = repository.insert_run(conn, symbol="AAPL", timeframe="1d", started_at=STARTED)
    finished = STARTED + timedelta(seconds=3)

    repository.finish_run(
        conn,
        run_id,
        status="failed",
        finished_at=finished,
        range_start=date(2024, 1, 1),
        range_end=date(2024, 3, 5),
        bars_written=0,
        provider_requests=4,
        error="provider error: boom",
    )

    row = conn.execute(
        """
        SELECT symbol, timeframe, status, started_at, finished_at, range_start, range_end,
               bars_written, provider_requests, error
        FROM backfill_runs WHERE id = %s
        """,
        (run_id,),
    ).fetchone()
    assert row == (
        "AAPL",
        "1d",
        "failed",
        STARTED,
        finished,
        date(2024, 1, 1),
        date(2024, 3, 5),
        0,
        4,
        "provider error: boom",
    )


def test_state_moves_through_in_progress_failed_and_completed(conn):
    make_symbol(conn, "AAPL")
    first = repository.insert_run(conn, symbol="AAPL", timeframe="1d", started_at=STARTED)

    repository.mark_in_progress(conn, symbol="AAPL", timeframe="1d", run_id=first)
    in_progress = state_row(conn)
    repository.mark_failed(conn, symbol="AAPL", timeframe="1d", run_id=first, error="boom")
    failed = state_row(conn)
    second = repository.insert_run(conn, symbol="AAPL", timeframe="1d", started_at=STARTED)
    repository.mark_in_progress(conn, symbol="AAPL", timeframe="1d", run_id=second)
    retrying = state_row(conn)
    repository.mark_completed(
        conn, symbol="AAPL", timeframe="1d", run_id=second, finished_at=STARTED
    )
    completed = state_row(conn)

    assert (in_progress.status, in_progress.last_error) == ("in_progress", None)
    assert (failed.status, failed.last_error, failed.last_backfill) == ("failed", "boom", None)
    # A retry keeps showing the last error until it succeeds.
    assert (retrying.status, retrying.last_error, retrying.last_run_id) == (
        "in_progress",
        "boom",
        second,
    )
    assert (completed.status, completed.last_error, completed.last_backfill) == (
        "completed",
        None,
        STARTED,
    )


def test_roll_up_of_a_symbol_over_its_timeframes(conn):
    make_symbol(conn, "AAPL", timeframes=["1d", "1h"])
    earlier = STARTED - timedelta(hours=1)

    repository.roll_up_symbol_status(conn, "AAPL")
    nothing_yet = symbol_row(conn)
    repository.mark_completed(conn, symbol="AAPL", timeframe="1d", run_id=1, finished_at=STARTED)
    repository.roll_up_symbol_status(conn, "AAPL")
    one_of_two = symbol_row(conn)
    repository.mark_in_progress(conn, symbol="AAPL", timeframe="1h", run_id=2)
    repository.roll_up_symbol_status(conn, "AAPL")
    running = symbol_row(conn)
    repository.mark_failed(conn, symbol="AAPL", timeframe="1h", run_id=2, error="HTTP 403")
    repository.roll_up_symbol_status(conn, "AAPL")
    failed = symbol_row(conn)
    repository.mark_completed(conn, symbol="AAPL", timeframe="1h", run_id=3, finished_at=earlier)
    repository.roll_up_symbol_status(conn, "AAPL")
    both = symbol_row(conn)

    assert nothing_yet == ("pending", None, None)
    assert one_of_two == ("pending", None, None)
    assert running == ("in_progress", None, None)
    assert failed == ("failed", None, "1h: HTTP 403")
    # The symbol is as fresh as its stalest timeframe.
    assert both == ("completed", earlier, None)


def test_roll_up_ignores_timeframes_the_symbol_no_longer_tracks(conn):
    make_symbol(conn, "AAPL", timeframes=["1d"])
    repository.mark_failed(conn, symbol="AAPL", timeframe="1h", run_id=1, error="old failure")
    repository.mark_completed(conn, symbol="AAPL", timeframe="1d", run_id=2, finished_at=STARTED)

    repository.roll_up_symbol_status(conn, "AAPL")

    assert symbol_row(conn) == ("completed", STARTED, None)


def test_symbols_and_states_are_listed_by_symbol(conn):
    make_symbol(conn, "MSFT")
    make_symbol(conn, "BTC", asset_class="crypto", timeframes=["1d", "1h"])
    make_symbol(conn, "IWM", asset_class="etf", active=False)
    repository.mark_in_progress(conn, symbol="BTC", timeframe="1h", run_id=1)

    active = repository.list_active_symbols(conn)
    named = repository.get_symbols(conn, ["IWM", "NOPE"])
    states = repository.list_states(conn, ["BTC", "MSFT"])

    assert [(s.symbol, s.asset_class, s.timeframes) for s in active] == [
        ("BTC", "crypto", ["1d", "1h"]),
        ("MSFT", "stock", ["1d"]),
    ]
    assert [(s.symbol, s.active) for s in named] == [("IWM", False)]
    assert [(s.symbol, s.timeframe, s.status) for s in states] == [("BTC", "1h", "in_progress")]


def stored_splits(conn):
    return conn.execute(
        "SELECT symbol, execution_date, split_from, split_to, ctid::text FROM splits"
        " ORDER BY symbol, execution_date"
    ).fetchall()


def test_upsert_split_inserts_once_and_leaves_a_split_seen_again_untouched(conn):
    split = {"symbol": "AAPL", "execution_date": date(2020, 8, 31), "split_from": 1, "split_to": 4}

    inserted = repository.upsert_split(conn, **split)
    first = stored_splits(conn)
    again = repository.upsert_split(conn, **split)

    assert (inserted, again) == (True, False)
    assert [row[:4] for row in first] == [("AAPL", date(2020, 8, 31), 1.0, 4.0)]
    assert stored_splits(conn) == first  # not even rewritten: the same tuple


def test_upsert_split_takes_a_corrected_ratio_for_the_same_day(conn):
    repository.upsert_split(
        conn, symbol="AAPL", execution_date=date(2020, 8, 31), split_from=1, split_to=5
    )

    changed = repository.upsert_split(
        conn, symbol="AAPL", execution_date=date(2020, 8, 31), split_from=1, split_to=4
    )

    assert changed is True
    assert [row[:4] for row in stored_splits(conn)] == [("AAPL", date(2020, 8, 31), 1.0, 4.0)]
