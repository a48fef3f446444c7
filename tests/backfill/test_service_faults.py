"""Provider faults through the simulator over real HTTP: the affected symbol fails alone, with a
readable error and no bars, and a re-run completes."""

from __future__ import annotations

import pytest

from chalicelib.backfill import service
from tests.backfill.conftest import CLIENT_TIMEOUT, MAX_RETRIES, SIM_API_KEY, make_client
from tests.factories import make_symbol

ATTEMPTS = MAX_RETRIES + 1


@pytest.fixture
def three_symbols(pinned_db, set_env):
    set_env(BACKFILL_DEPTH_DAILY_DAYS="20")
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "MSFT")
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    return pinned_db


def outcome(conn):
    """Per symbol: its status, error, bar count and the status of its runs."""
    rows = conn.execute(
        """
        SELECT s.symbol, s.backfill_status, s.last_error,
               (SELECT count(*) FROM bars b WHERE b.symbol = s.symbol),
               (SELECT array_agg(r.status ORDER BY r.id) FROM backfill_runs r
                WHERE r.symbol = s.symbol)
        FROM tracked_symbols s ORDER BY s.symbol
        """
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def daily_bars_in_both_windows(conn, symbols):
    """Each symbol's daily bars on the New York days covered by the last completed run of
    every one of `symbols`, in the order given."""
    rows = conn.execute(
        """
        WITH windows AS (
            SELECT DISTINCT ON (symbol) range_start, range_end FROM backfill_runs
            WHERE symbol = ANY(%(symbols)s) AND status = 'completed'
            ORDER BY symbol, id DESC
        )
        SELECT (SELECT count(*) FROM bars b
                WHERE b.symbol = s.symbol AND b.timeframe = '1d'
                  AND (b.time AT TIME ZONE 'America/New_York')::date
                      BETWEEN (SELECT max(range_start) FROM windows)
                      AND (SELECT min(range_end) FROM windows))
        FROM unnest(%(symbols)s::text[]) WITH ORDINALITY AS s(symbol, position)
        ORDER BY s.position
        """,
        {"symbols": symbols},
    ).fetchall()
    return [count for (count,) in rows]


@pytest.mark.parametrize(
    ("kind", "options", "times", "max_retries", "message"),
    [
        pytest.param(
            "rate_limit",
            {"retry_after": 1},
            ATTEMPTS,
            MAX_RETRIES,
            f"gave up after {ATTEMPTS} attempts; last: 429: You've exceeded the maximum requests",
            id="429-with-retry-after",
        ),
        pytest.param(
            "rate_limit",
            {"retry_after": None},
            ATTEMPTS,
            MAX_RETRIES,
            f"gave up after {ATTEMPTS} attempts; last: 429",
            id="429-without-retry-after",
        ),
        pytest.param(
            "server_error",
            {},
            ATTEMPTS,
            MAX_RETRIES,
            f"gave up after {ATTEMPTS} attempts; last: 500: Internal error",
            id="500",
        ),
        # One attempt: each retry would wait out the whole client timeout again.
        pytest.param(
            "slow",
            {"seconds": CLIENT_TIMEOUT + 1.0},
            1,
            0,
            f"gave up after 1 attempt; last: no answer within {CLIENT_TIMEOUT:g}s",
            id="slow-past-the-timeout",
        ),
        pytest.param(
            "malformed_json", {}, 1, MAX_RETRIES, "unreadable answer", id="malformed-json"
        ),
        pytest.param("unauthorized", {}, 1, MAX_RETRIES, "401 the API key was rejected", id="401"),
        pytest.param("forbidden", {}, 1, MAX_RETRIES, "403 not included in the plan", id="403"),
    ],
)
def test_a_provider_fault_fails_only_its_symbol(
    three_symbols, simulator, polygon, kind, options, times, max_retries, message
):
    conn = three_symbols
    simulator.inject_fault(kind, ticker="MSFT", times=times, **options)

    with make_client(simulator, max_retries=max_retries) as client:
        results = service.run_backfill(client=client)

    by_symbol = {result.symbol: result for result in results}
    failed = by_symbol["MSFT"]
    assert [(r.symbol, r.status) for r in results] == [
        ("AAPL", "completed"),
        ("BTC", "completed"),
        ("MSFT", "failed"),
    ]
    assert failed.error.startswith("provider: GET /v3/reference/splits: ")
    assert message in failed.error
    assert SIM_API_KEY not in failed.error
    assert failed.bars_written == 0
    status = outcome(conn)
    assert status["MSFT"] == ("failed", f"1d: {failed.error}", 0, ["failed"])
    assert status["AAPL"][:2] == ("completed", None)
    # The window ends on today's UTC date: how many sessions it holds depends on the date
    # (weekends, holidays, whether New York has reached it yet), so only a lower bound here.
    assert status["AAPL"][2] > 10
    assert status["BTC"][:2] == ("completed", None)
    assert status["BTC"][2] == 21

    simulator.clear_faults()
    again = service.run_backfill(symbols=["MSFT"], client=polygon)

    assert [(r.symbol, r.status, r.error) for r in again] == [("MSFT", "completed", None)]
    assert outcome(conn)["MSFT"][:2] == ("completed", None)
    assert outcome(conn)["MSFT"][3] == ["failed", "completed"]
    # The re-run wrote every session of its window that AAPL's run got. Compared over the days
    # both windows cover: each ends on its run's UTC date, so a re-run after midnight ends later.
    aapl, msft = daily_bars_in_both_windows(conn, ["AAPL", "MSFT"])
    assert msft == aapl > 10


def test_a_fault_on_a_later_page_leaves_no_bar_of_the_earlier_pages(
    three_symbols, simulator, polygon
):
    conn = three_symbols
    simulator.page_size = 5
    pages = polygon.aggregates

    def fail_after_first_page(ticker, *args, **kwargs):
        for number, page in enumerate(pages(ticker, *args, **kwargs)):
            if number == 0 and ticker == "X:BTCUSD":
                simulator.inject_fault("server_error", ticker=ticker, times=ATTEMPTS)
            yield page

    polygon.aggregates = fail_after_first_page

    results = service.run_backfill(client=polygon)

    btc = next(result for result in results if result.symbol == "BTC")
    btc_pages = [r for r in simulator.requests if r.path.startswith("/v2/aggs/ticker/X:BTCUSD")]
    assert btc.status == "failed"
    assert btc.bars_fetched == 0
    assert len(btc_pages) == 1 + ATTEMPTS
    assert outcome(conn)["BTC"][:3] == ("failed", f"1d: {btc.error}", 0)
    assert [r.status for r in results if r.symbol != "BTC"] == ["completed", "completed"]

    polygon.aggregates = pages
    again = service.run_backfill(symbols=["BTC"], client=polygon)

    assert again[0].status == "completed"
    assert outcome(conn)["BTC"][2] == 21


def test_a_transient_429_is_retried_and_counted(three_symbols, simulator, polygon):
    simulator.inject_fault("rate_limit", ticker="AAPL", times=1, retry_after=1)

    results = service.run_backfill(symbols=["AAPL"], client=polygon)

    assert [(r.status, r.provider_requests) for r in results] == [("completed", 3)]


def test_progress_hears_each_unit_as_it_finishes(three_symbols, simulator, polygon):
    heard = []

    results = service.run_backfill(client=polygon, on_progress=heard.append)

    assert heard == results
    assert [r.symbol for r in heard] == ["AAPL", "BTC", "MSFT"]
