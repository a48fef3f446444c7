from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from chalicelib.backfill import repository, service
from chalicelib.backfill.models import BackfillUnit
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.market.calendar import NEW_YORK, trading_days
from chalicelib.polygon import PolygonBar
from tests.backfill.conftest import SIM_API_KEY
from tests.conftest import PinnedConnection
from tests.factories import make_key, make_symbol

# A Friday evening in New York (summer time): the day's session is over.
NOW = datetime(2024, 6, 14, 22, 0, tzinfo=UTC)
TODAY = NOW.date()


def clock(moment: datetime = NOW):
    return lambda: moment


def stored_bars(conn, symbol, timeframe="1d", relation="bars"):
    """Rows of `relation`: the bars as stored, or `adjusted_bars` (split-adjusted)."""
    return conn.execute(
        f"""
        SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
        FROM {relation} WHERE symbol = %s AND timeframe = %s ORDER BY time
        """,
        (symbol, timeframe),
    ).fetchall()


def bar_count(conn, symbol, timeframe="1d"):
    row = conn.execute(
        "SELECT count(*) FROM bars WHERE symbol = %s AND timeframe = %s", (symbol, timeframe)
    ).fetchone()
    return row[0]


def runs_of(conn, symbol):
    return conn.execute(
        """
        SELECT timeframe, status, range_start, range_end, bars_written, provider_requests, error
        FROM backfill_runs WHERE symbol = %s ORDER BY id
        """,
        (symbol,),
    ).fetchall()


def symbol_status(conn, symbol):
    return conn.execute(
        "SELECT backfill_status, last_backfill, last_error FROM tracked_symbols WHERE symbol = %s",
        (symbol,),
    ).fetchone()


def splits_of(conn):
    """The stored splits, each with its tuple id (an upsert that rewrites a row changes it)."""
    return conn.execute(
        "SELECT symbol, execution_date, split_from, split_to, ctid::text FROM splits"
        " ORDER BY symbol, execution_date"
    ).fetchall()


def aggregate_paths(simulator):
    return [r.path for r in simulator.requests if r.path.startswith("/v2/aggs/")]


def unit(symbol="AAPL", asset_class="stock", timeframe="1d"):
    return BackfillUnit(symbol, asset_class, timeframe)


# -- planning --------------------------------------------------------------------------------


def test_plan_covers_every_active_symbol_and_its_timeframes(conn):
    make_symbol(conn, "MSFT", timeframes=["1d", "1h"])
    make_symbol(conn, "BTC", asset_class="crypto")
    make_symbol(conn, "IWM", asset_class="etf", active=False)

    units = service.plan_units(conn)

    assert units == [
        unit("BTC", "crypto", "1d"),
        unit("MSFT", "stock", "1h"),
        unit("MSFT", "stock", "1d"),
    ]


def test_plan_of_named_symbols_normalises_them_and_filters_a_timeframe(conn):
    make_symbol(conn, "BTC", asset_class="crypto", timeframes=["1d", "1h"])
    make_symbol(conn, "AAPL", timeframes=["1h"])

    units = service.plan_units(conn, symbols=["btc-usd", "X:BTCUSD", "aapl"], timeframe="1h")

    assert units == [unit("BTC", "crypto", "1h"), unit("AAPL", "stock", "1h")]


def test_plan_builds_timeframes_from_a_finer_tracked_one_and_orders_it_first(conn):
    make_symbol(conn, "AAPL", timeframes=["1w", "1h", "4h", "1d", "5m", "1m"])
    make_symbol(conn, "MSFT", timeframes=["1h", "1w"])

    units = service.plan_units(conn, symbols=["AAPL", "MSFT"])

    assert units == [
        BackfillUnit("AAPL", "stock", "1m"),
        BackfillUnit("AAPL", "stock", "5m", "1m"),
        BackfillUnit("AAPL", "stock", "1h", "1m"),
        BackfillUnit("AAPL", "stock", "4h"),
        BackfillUnit("AAPL", "stock", "1d"),
        BackfillUnit("AAPL", "stock", "1w", "1d"),
        BackfillUnit("MSFT", "stock", "1h"),
        BackfillUnit("MSFT", "stock", "1w"),
    ]


def test_plan_refuses_unknown_or_inactive_symbols_and_unknown_timeframes(conn):
    make_symbol(conn, "AAPL")
    make_symbol(conn, "IWM", asset_class="etf", active=False)

    with pytest.raises(NotFound, match="not a tracked symbol: NOPE"):
        service.plan_units(conn, symbols=["AAPL", "NOPE"])
    with pytest.raises(Conflict, match="symbol is deactivated: IWM"):
        service.plan_units(conn, symbols=["IWM"])
    with pytest.raises(BadRequest, match="unknown timeframe '2h'"):
        service.plan_units(conn, timeframe="2h")
    with pytest.raises(BadRequest, match="AAPL does not track the 1h timeframe"):
        service.plan_units(conn, symbols=["AAPL"], timeframe="1h")
    with pytest.raises(BadRequest, match="symbol must be"):
        service.plan_units(conn, symbols=["no/such"])


def test_plan_can_leave_out_units_backfilled_recently(conn):
    make_symbol(conn, "AAPL", timeframes=["1d", "1h"])
    make_symbol(conn, "MSFT")
    repository.mark_completed(conn, symbol="AAPL", timeframe="1d", run_id=1, finished_at=NOW)
    repository.mark_completed(
        conn, symbol="MSFT", timeframe="1d", run_id=2, finished_at=NOW - timedelta(days=2)
    )

    units = service.plan_units(conn, fresh_since=NOW - timedelta(hours=12))

    assert units == [unit("AAPL", "stock", "1h"), unit("MSFT", "stock", "1d")]


# -- one unit against the simulator -----------------------------------------------------------


def test_a_new_stock_is_backfilled_five_years_deep(conn, simulator, polygon):
    make_symbol(conn, "AAPL")

    result = service.backfill_one(PinnedConnection(conn), polygon, unit(), "1d", now=clock())

    start = TODAY - timedelta(days=1826)
    assert aggregate_paths(simulator) == [
        f"/v2/aggs/ticker/AAPL/range/1/day/{start.isoformat()}/{TODAY.isoformat()}"
    ]
    assert simulator.requests[-1].header("Authorization") == f"Bearer {SIM_API_KEY}"
    assert result.status == "completed"
    assert result.error is None
    assert (result.range_start, result.range_end, result.full) == (start, TODAY, True)
    # Five years of NYSE sessions, every one written, every one at midnight New York.
    bars = stored_bars(conn, "AAPL")
    assert len(bars) == len(trading_days(start, TODAY)) == 1259
    assert result.bars_written == result.bars_fetched == len(bars)
    assert result.provider_requests == 2  # the split check and one page of bars
    assert {b[0].astimezone(NEW_YORK).time().isoformat() for b in bars} == {"00:00:00"}
    assert all(b[8] for b in bars)
    assert runs_of(conn, "AAPL") == [
        ("1d", "completed", start, TODAY, len(bars), 2, None),
    ]
    assert symbol_status(conn, "AAPL") == ("completed", NOW, None)
    state = repository.get_state(conn, "AAPL", "1d")
    assert (state.status, state.last_backfill, state.last_run_id) == (
        "completed",
        NOW,
        result.run_id,
    )


def test_a_new_intraday_timeframe_starts_thirty_days_back(conn, simulator, polygon):
    make_symbol(conn, "AAPL", timeframes=["1h"])

    result = service.backfill_one(PinnedConnection(conn), polygon, unit(), "1h", now=clock())

    start = TODAY - timedelta(days=30)
    assert aggregate_paths(simulator) == [
        f"/v2/aggs/ticker/AAPL/range/1/hour/{start.isoformat()}/{TODAY.isoformat()}"
    ]
    assert result.status == "completed"
    # Seven hourly bars (09:00, holding 09:30-09:59, to 15:00) in each of the 22 sessions.
    assert len(trading_days(start, TODAY)) == 22
    assert bar_count(conn, "AAPL", "1h") == result.bars_written == 22 * 7


def test_depths_come_from_settings(conn, simulator, polygon, set_env):
    set_env(BACKFILL_DEPTH_DAILY_DAYS="10", BACKFILL_DEPTH_INTRADAY_DAYS="2")
    make_symbol(conn, "AAPL", timeframes=["1d", "5m"])

    service.backfill_one(PinnedConnection(conn), polygon, unit(), "1d", now=clock())
    service.backfill_one(PinnedConnection(conn), polygon, unit(), "5m", now=clock())

    assert aggregate_paths(simulator) == [
        "/v2/aggs/ticker/AAPL/range/1/day/2024-06-04/2024-06-14",
        "/v2/aggs/ticker/AAPL/range/5/minute/2024-06-12/2024-06-14",
    ]


def test_a_rerun_starts_at_the_newest_bar_and_rewrites_nothing(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    before = stored_bars(conn, "AAPL")
    simulator.clear_log()

    later = NOW + timedelta(days=3)  # the next Monday evening
    result = service.backfill_one(source, polygon, unit(), "1d", now=clock(later))

    # Friday's bar (the newest stored) is fetched again, with Monday's new one.
    assert aggregate_paths(simulator) == ["/v2/aggs/ticker/AAPL/range/1/day/2024-06-14/2024-06-17"]
    assert (result.status, result.full, result.bars_fetched, result.bars_written) == (
        "completed",
        False,
        2,
        1,
    )
    after = stored_bars(conn, "AAPL")
    assert after[:-1] == before
    assert after[-1][0] == datetime(2024, 6, 17, tzinfo=NEW_YORK)
    assert len(runs_of(conn, "AAPL")) == 2


def test_a_partial_newest_bar_is_replaced_on_the_next_run(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    final = stored_bars(conn, "AAPL")[-1]
    conn.execute(
        """
        UPDATE bars SET close = close * 0.9, high = high * 0.9, volume = volume / 3, trades = 1
        WHERE symbol = 'AAPL' AND timeframe = '1d' AND time = %s
        """,
        (final[0],),
    )

    result = service.backfill_one(source, polygon, unit(), "1d", now=clock())

    assert result.bars_written == 1
    assert stored_bars(conn, "AAPL")[-1] == final


def test_until_ends_the_window_at_the_market_date_asked_for(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", until=date(2024, 6, 12), now=clock())
    simulator.clear_log()

    later = NOW + timedelta(days=3)
    result = service.backfill_one(
        source, polygon, unit(), "1d", until=date(2024, 6, 13), now=clock(later)
    )

    assert aggregate_paths(simulator) == ["/v2/aggs/ticker/AAPL/range/1/day/2024-06-12/2024-06-13"]
    assert (result.range_start, result.range_end, result.bars_written) == (
        date(2024, 6, 12),
        date(2024, 6, 13),
        1,
    )
    assert stored_bars(conn, "AAPL")[-1][0] == datetime(2024, 6, 13, tzinfo=NEW_YORK)


def test_a_unit_already_past_until_fetches_that_day_only_and_writes_nothing(
    conn, simulator, polygon
):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    before = stored_bars(conn, "AAPL")
    simulator.clear_log()

    result = service.backfill_one(
        source, polygon, unit(), "1d", until=date(2024, 6, 12), now=clock()
    )

    assert aggregate_paths(simulator) == ["/v2/aggs/ticker/AAPL/range/1/day/2024-06-12/2024-06-12"]
    assert (result.status, result.bars_fetched, result.bars_written) == ("completed", 1, 0)
    assert stored_bars(conn, "AAPL") == before


def test_since_and_full_widen_the_window(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    simulator.clear_log()

    since = service.backfill_one(source, polygon, unit(), "1d", since=date(2024, 1, 2), now=clock())
    full = service.backfill_one(source, polygon, unit(), "1d", full=True, now=clock())

    first_run_start = (TODAY - timedelta(days=1826)).isoformat()
    assert aggregate_paths(simulator) == [
        "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-06-14",
        f"/v2/aggs/ticker/AAPL/range/1/day/{first_run_start}/2024-06-14",
    ]
    assert (since.bars_written, full.bars_written) == (0, 0)
    assert full.full is True


def test_crypto_is_fetched_as_the_usd_pair_every_day_with_fractional_volume(
    conn, simulator, polygon
):
    make_symbol(conn, "BTC", asset_class="crypto")

    result = service.backfill_one(
        PinnedConnection(conn),
        polygon,
        unit("BTC", "crypto"),
        "1d",
        since=date(2024, 6, 1),
        now=clock(),
    )

    assert [r.path for r in simulator.requests] == [
        "/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-06-01/2024-06-14"
    ]
    bars = stored_bars(conn, "BTC")
    assert result.status == "completed"
    # Every calendar day, weekends included, each starting at 00:00 UTC.
    assert [b[0] for b in bars] == [
        datetime(2024, 6, 1, tzinfo=UTC) + timedelta(days=n) for n in range(14)
    ]
    assert any(b[5] != int(b[5]) for b in bars)
    assert all(b[8] and b[9] == [] for b in bars)


def adjusted_bars(conn, symbol, timeframe="1d"):
    return stored_bars(conn, symbol, timeframe, relation="adjusted_bars")


def provider_bars(polygon, start, end, *, adjusted, ticker="AAPL"):
    """The simulator's daily bars as (time, open, high, low, close, volume, vwap, trades)."""
    pages = polygon.aggregates(ticker, 1, "day", start, end, adjusted=adjusted)
    return [
        (datetime.fromtimestamp(b.t / 1000, UTC), b.o, b.h, b.l, b.c, b.v, b.vw, b.n)
        for page in pages
        for b in page
    ]


def approx_rows(rows):
    """Provider rows as our reads may differ from them: the provider rounds adjusted prices to
    four decimals and volumes to whole shares, the view divides the traded ones exactly."""
    return [
        (
            time,
            *(pytest.approx(price, abs=5.001e-5) for price in (o, h, low, c)),
            pytest.approx(volume, rel=1e-6),
            pytest.approx(vwap, abs=5.001e-5),
            trades,
        )
        for time, o, h, low, c, volume, vwap, trades in rows
    ]


def test_bars_are_stored_as_traded_and_read_split_adjusted(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    simulator.add_split("AAPL", date(2020, 8, 31), 1, 4)
    simulator.add_split("AAPL", date(2022, 6, 6), 1, 20)
    simulator.clear_log()

    result = service.backfill_one(PinnedConnection(conn), polygon, unit(), "1d", now=clock())

    assert result.status == "completed"
    fetched = [r.query for r in simulator.requests if r.path.startswith("/v2/aggs/ticker/")]
    assert [query["adjusted"] for query in fetched] == ["false"]
    stored = stored_bars(conn, "AAPL")
    start, end = stored[0][0].astimezone(NEW_YORK).date(), TODAY
    assert [row[:8] for row in stored] == provider_bars(polygon, start, end, adjusted=False)
    # The view divides by 80 before 31 Aug 2020 and by 20 until 6 Jun 2022, as Polygon does.
    read = [row[:8] for row in adjusted_bars(conn, "AAPL")]
    assert read == approx_rows(provider_bars(polygon, start, end, adjusted=True))
    ratios = {round(a[4] and s[4] / a[4], 9) for s, a in zip(stored, read, strict=True)}
    assert ratios == {80.0, 20.0, 1.0}
    # Judged in today's shares: neither split is a price jump, nor the volume after it a spike.
    assert all(row[8] and row[9] == [] for row in stored)


def test_a_split_since_the_last_backfill_rewrites_no_bar(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    first = stored_bars(conn, "AAPL")
    simulator.add_split("AAPL", date(2024, 6, 17), 1, 4)
    simulator.clear_log()

    later = NOW + timedelta(days=3)
    result = service.backfill_one(source, polygon, unit(), "1d", now=clock(later))

    splits_checks = [r.query for r in simulator.requests if r.path == "/v3/reference/splits"]
    assert splits_checks[0]["execution_date.gte"] == "2024-06-14"
    # Only from the newest stored bar on: no stored price changes with the split.
    assert aggregate_paths(simulator) == ["/v2/aggs/ticker/AAPL/range/1/day/2024-06-14/2024-06-17"]
    assert (result.status, result.full, result.bars_written) == ("completed", False, 1)
    after = stored_bars(conn, "AAPL")
    assert after[:-1] == first
    assert [row[:4] for row in splits_of(conn)] == [("AAPL", date(2024, 6, 17), 1.0, 4.0)]
    # Reads apply it: every earlier bar in post-split shares, the new bar as traded.
    read = adjusted_bars(conn, "AAPL")
    assert read[-1] == after[-1]
    for old, new in zip(first, read, strict=False):
        assert new[1:5] == pytest.approx([price / 4 for price in old[1:5]], rel=1e-12)
        assert new[5] == pytest.approx(old[5] * 4, rel=1e-12)
    start = first[0][0].astimezone(NEW_YORK).date()
    expected = provider_bars(polygon, start, date(2024, 6, 17), adjusted=True)
    assert [row[:8] for row in read] == approx_rows(expected)
    # The split day drops to a quarter of the close before it: not a price jump.
    assert after[-1][8:] == (True, [])


def test_a_unit_stored_split_adjusted_is_fetched_whole_once(conn, simulator, polygon, client):
    """Bars written before migration 0009 are split-adjusted: the unit's next run re-fetches it
    as traded prices and marks it, and the runs after it are incremental again."""
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    simulator.add_split("AAPL", date(2022, 6, 6), 1, 20)
    provider = provider_bars(polygon, date(2019, 1, 1), TODAY, adjusted=True)
    first_day = provider[0][0]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap,"
            " trades, validated) VALUES ('AAPL', '1d', %s, %s, %s, %s, %s, %s, %s, %s, true)",
            provider,
        )
    conn.execute(
        "INSERT INTO backfill_state (symbol, timeframe, status, last_backfill, stored_prices)"
        " VALUES ('AAPL', '1d', 'completed', %s, 'split_adjusted')",
        (NOW,),
    )
    # Served as stored meanwhile: the adjusted prices, not divided again by the stored split.
    conn.execute(
        "INSERT INTO splits (symbol, execution_date, split_from, split_to)"
        " VALUES ('AAPL', '2022-06-06', 1, 20)"
    )
    assert [row[:8] for row in adjusted_bars(conn, "AAPL")] == provider
    simulator.clear_log()

    converted = service.backfill_one(source, polygon, unit(), "1d", now=clock())
    again = service.backfill_one(source, polygon, unit(), "1d", now=clock())

    start = first_day.astimezone(NEW_YORK).date()
    assert (converted.status, converted.full) == ("completed", True)
    assert converted.range_start == start
    assert (again.full, again.bars_written) == (False, 0)
    state = repository.get_state(conn, "AAPL", "1d")
    assert state is not None
    assert state.stored_prices == "unadjusted"
    traded = provider_bars(polygon, start, TODAY, adjusted=False)
    assert [row[:8] for row in stored_bars(conn, "AAPL")] == traded
    assert [row[:8] for row in adjusted_bars(conn, "AAPL")] == approx_rows(provider)


def test_a_split_before_the_last_backfill_changes_nothing(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    simulator.add_split("AAPL", date(2022, 6, 6), 1, 20)
    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    simulator.clear_log()

    result = service.backfill_one(source, polygon, unit(), "1d", now=clock())

    assert (result.status, result.full, result.bars_written) == ("completed", False, 0)
    assert aggregate_paths(simulator) == ["/v2/aggs/ticker/AAPL/range/1/day/2024-06-14/2024-06-14"]


def test_the_splits_a_backfill_learns_are_stored_once_and_served(conn, simulator, polygon, client):
    make_symbol(conn, "AAPL")
    source = PinnedConnection(conn)
    simulator.add_split("AAPL", date(2022, 6, 6), 1, 20)
    simulator.add_split("AAPL", date(2020, 8, 31), 1, 4)
    simulator.add_split("MSFT", date(2022, 6, 6), 1, 3)  # not tracked: never asked about

    service.backfill_one(source, polygon, unit(), "1d", now=clock())
    first = splits_of(conn)
    simulator.clear_log()
    # Run again from the beginning, as a redelivered message or `--full` would: every split is
    # fetched again and none is added or rewritten.
    again = service.backfill_one(source, polygon, unit(), "1d", full=True, now=clock())

    assert [row[:4] for row in first] == [
        ("AAPL", date(2020, 8, 31), 1.0, 4.0),
        ("AAPL", date(2022, 6, 6), 1.0, 20.0),
    ]
    assert again.status == "completed"
    assert [r.query["ticker"] for r in simulator.requests if r.path == "/v3/reference/splits"] == [
        "AAPL"
    ]
    assert splits_of(conn) == first

    reader = {"Authorization": f"Bearer {make_key(conn).raw_key}"}
    response = client.http.get("/v3/reference/splits?ticker=AAPL&order=desc", headers=reader)
    served = json.loads(response.body)
    assert response.status_code == 200
    assert [
        (s["ticker"], s["execution_date"], s["split_from"], s["split_to"])
        for s in served["results"]
    ] == [("AAPL", "2022-06-06", 1, 20), ("AAPL", "2020-08-31", 1, 4)]


def test_delayed_data_is_accepted(conn, simulator, polygon):
    make_symbol(conn, "AAPL")
    simulator.inject_fault("delayed", ticker="AAPL", times=None)

    result = service.backfill_one(PinnedConnection(conn), polygon, unit(), "1d", now=clock())

    assert result.status == "completed"
    assert bar_count(conn, "AAPL") == result.bars_written == 1259  # five years of sessions


def test_a_failed_write_stores_no_bar_and_records_the_failure(
    conn, simulator, polygon, monkeypatch
):
    make_symbol(conn, "AAPL")
    simulator.add_split("AAPL", date(2022, 6, 6), 1, 20)
    real_upsert = repository.upsert_bars

    def upsert_then_fail(connection, **kwargs):
        written = real_upsert(connection, **kwargs)
        connection.execute("SELECT 1 / 0")
        return written

    monkeypatch.setattr(repository, "upsert_bars", upsert_then_fail)

    result = service.backfill_one(PinnedConnection(conn), polygon, unit(), "1d", now=clock())

    assert result.status == "failed"
    assert result.error == "database: division by zero"
    assert bar_count(conn, "AAPL") == 0
    assert splits_of(conn) == []  # written with the bars, so rolled back with them
    assert runs_of(conn, "AAPL")[0][1:2] + runs_of(conn, "AAPL")[0][4:] == (
        "failed",
        0,
        2,
        "database: division by zero",
    )
    assert symbol_status(conn, "AAPL") == ("failed", None, "1d: database: division by zero")


class ScriptedClient:
    """A provider answering with given bars, for validation through the whole pipeline."""

    request_count = 0

    def __init__(self, bars: list[PolygonBar]) -> None:
        self.bars = bars

    def aggregates(self, ticker, multiplier, timespan, start, end, **options):
        self.request_count += 1
        yield self.bars

    def splits(self, ticker, since):
        self.request_count += 1
        return []

    def redact(self, text):
        return text


def test_bad_bars_are_kept_with_their_flags(conn):
    make_symbol(conn, "ETH", asset_class="crypto")
    day = 86_400_000
    t0 = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    bars = [
        PolygonBar(t0, 10.0, 11.0, 9.0, 10.0, 5.0, 10.0, 3),
        PolygonBar(t0 + day, 10.0, 9.0, 11.0, 10.0, 5.0, 10.0, 3),  # high below low
        PolygonBar(t0 + 2 * day + 3_600_000, 10.0, 11.0, 9.0, 10.0, 5.0),  # 01:00, no vwap
        PolygonBar(t0 + 3 * day, 10.0, 14.0, 9.0, 13.5, -1.0, 12.0, 3),  # +35%, volume < 0
        # A duplicate of the first bar on a later page: the later one wins.
        PolygonBar(t0, 10.0, 11.0, 9.0, 10.5, 6.0, 10.0, 4),
    ]

    result = service.backfill_one(
        PinnedConnection(conn), ScriptedClient(bars), unit("ETH", "crypto"), "1d", now=clock()
    )

    rows = stored_bars(conn, "ETH")
    assert result.status == "completed"
    assert result.bars_written == 4
    assert [(row[4], row[8], row[9]) for row in rows] == [
        (10.5, True, []),
        (10.0, False, ["ohlc_inconsistent"]),
        (10.0, False, ["misaligned_timestamp"]),
        (13.5, False, ["negative_volume", "price_jump"]),
    ]
    assert rows[2][6:8] == (None, None)


def test_an_incremental_run_validates_against_the_stored_bars_before_it(conn):
    make_symbol(conn, "ETH", asset_class="crypto")
    day = 86_400_000
    t0 = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    first = [PolygonBar(t0 + n * day, 10.0, 11.0, 9.0, 10.0, 5.0) for n in range(3)]
    source = PinnedConnection(conn)
    service.backfill_one(source, ScriptedClient(first), unit("ETH", "crypto"), "1d", now=clock())

    # The re-fetched newest bar, then a bar 40% above its close: judged against stored bars.
    second = [first[-1], PolygonBar(t0 + 3 * day, 14.0, 14.5, 13.5, 14.0, 5.0)]
    service.backfill_one(source, ScriptedClient(second), unit("ETH", "crypto"), "1d", now=clock())

    assert [row[9] for row in stored_bars(conn, "ETH")] == [[], [], [], ["price_jump"]]


class InterruptedClient(ScriptedClient):
    def aggregates(self, ticker, multiplier, timespan, start, end, **options):
        raise KeyboardInterrupt
        yield []


def test_an_interrupted_unit_is_recorded_as_failed_and_the_interrupt_goes_on(conn):
    make_symbol(conn, "ETH", asset_class="crypto")

    with pytest.raises(KeyboardInterrupt):
        service.backfill_one(
            PinnedConnection(conn), InterruptedClient([]), unit("ETH", "crypto"), "1d", now=clock()
        )

    assert runs_of(conn, "ETH")[0][1] == "failed"
    assert symbol_status(conn, "ETH") == ("failed", None, "1d: interrupted before it finished")


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.committed
def test_two_timeframes_of_one_symbol_finishing_together_roll_up_to_completed(
    committed_db, simulator, set_env
):
    import threading

    from chalicelib import db
    from chalicelib.polygon import PolygonClient

    set_env(BACKFILL_DEPTH_INTRADAY_DAYS="3")
    with psycopg.connect(committed_db, autocommit=True) as conn:
        make_symbol(conn, "AAPL", timeframes=["1d", "5m", "15m", "1h"])
    results = []

    def run(timeframe):
        with PolygonClient(simulator.url, SIM_API_KEY) as client:
            results.append(service.backfill_one(db.get_database(), client, unit(), timeframe))

    threads = [threading.Thread(target=run, args=(tf,)) for tf in ("1d", "5m", "15m", "1h")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.status for r in results) == ["completed"] * 4
    with psycopg.connect(committed_db, autocommit=True) as conn:
        status, last_backfill, error = symbol_status(conn, "AAPL")
    assert (status, error) == ("completed", None)
    assert last_backfill == min(r.finished_at for r in results)


# -- timeframes built from stored bars --------------------------------------------------------


def group_by(rows, key):
    """Independent aggregation of stored rows (time, o, h, l, c, v, vw, n) into buckets."""
    buckets: dict = {}
    for row in rows:
        buckets.setdefault(key(row[0]), []).append(row)
    built = []
    for start, parts in sorted(buckets.items()):
        volume = sum(p[5] for p in parts)
        built.append(
            (
                start,
                parts[0][1],
                max(p[2] for p in parts),
                min(p[3] for p in parts),
                parts[-1][4],
                volume,
                sum(p[6] * p[5] for p in parts) / volume,
                sum(p[7] for p in parts),
            )
        )
    return built


def approx_built(rows):
    return [
        (
            t,
            *(pytest.approx(x, abs=1e-9) for x in (o, h, low, c)),
            pytest.approx(v, rel=1e-12),
            pytest.approx(vw, rel=1e-12),
            n,
        )
        for t, o, h, low, c, v, vw, n in rows
    ]


def test_finer_stored_bars_build_the_coarser_timeframes_without_a_provider_request(
    conn, simulator, polygon
):
    make_symbol(conn, "AAPL", timeframes=["1m", "5m", "1h", "1d", "1w"])
    simulator.add_split("AAPL", date(2024, 6, 3), 1, 4)  # inside every window: traded prices
    simulator.clear_log()

    results = service.run_units(
        service.plan_units(conn, symbols=["AAPL"]),
        source=PinnedConnection(conn),
        client=polygon,
        until=TODAY,
    )

    assert [(r.timeframe, r.status) for r in results] == [
        ("1m", "completed"),
        ("5m", "completed"),
        ("1h", "completed"),
        ("1d", "completed"),
        ("1w", "completed"),
    ]
    assert [r.provider_requests for r in results] == [2, 0, 0, 2, 0]  # splits + aggregates
    fetched = {"/".join(path.split("/")[6:8]) for path in aggregate_paths(simulator)}
    assert fetched == {"1/minute", "1/day"}
    minutes = [row[:8] for row in stored_bars(conn, "AAPL", "1m")]
    days = [row[:8] for row in stored_bars(conn, "AAPL", "1d")]
    hour = timedelta(hours=1)

    def clock_hour(moment):
        return moment.replace(minute=0, second=0, microsecond=0)

    def five_minutes(moment):
        return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)

    def sunday_in_new_york(moment):
        day = moment.astimezone(NEW_YORK).date()
        sunday = day - timedelta(days=(day.weekday() + 1) % 7)
        return datetime.combine(sunday, datetime.min.time(), tzinfo=NEW_YORK).astimezone(UTC)

    five = [row[:8] for row in stored_bars(conn, "AAPL", "5m")]
    hours = [row[:8] for row in stored_bars(conn, "AAPL", "1h")]
    weeks = [row[:8] for row in stored_bars(conn, "AAPL", "1w")]
    assert five == approx_built(group_by(minutes, five_minutes))
    assert hours == approx_built(group_by(minutes, clock_hour))
    assert weeks == approx_built(group_by(days, sunday_in_new_york))
    # The provider's own 5-minute and hour bars of those minutes agree (it rounds its volumes
    # and vwap).
    for built, multiplier, timespan in ((five, 5, "minute"), (hours, 1, "hour")):
        provider = [
            (datetime.fromtimestamp(b.t / 1000, UTC), b.o, b.h, b.l, b.c)
            for page in polygon.aggregates(
                "AAPL", multiplier, timespan, built[0][0].date(), TODAY, adjusted=False
            )
            for b in page
        ]
        assert [row[:5] for row in built] == [
            (row[0], *(pytest.approx(x, abs=1e-9) for x in row[1:])) for row in provider
        ]
    # Hours on the clock: the 09:30 minute opens the 09:00 bar, which ends at 10:00.
    assert all(row[0].minute == 0 for row in hours)
    assert hours[0][0] + hour > minutes[0][0] >= hours[0][0]
    # Judged like fetched bars: the split day in the middle is neither a jump nor a spike.
    assert all(
        row[8] and row[9] == []
        for table in ("5m", "1h", "1w")
        for row in stored_bars(conn, "AAPL", table)
    )


def test_a_built_timeframe_continues_from_its_newest_bar(conn, simulator, polygon):
    make_symbol(conn, "AAPL", timeframes=["1m", "15m"])
    source = PinnedConnection(conn)
    service.run_units(service.plan_units(conn), source=source, client=polygon, until=TODAY)
    before = stored_bars(conn, "AAPL", "15m")
    simulator.clear_log()

    later = date(2024, 6, 17)
    results = service.run_units(
        service.plan_units(conn), source=source, client=polygon, until=later
    )

    assert [(r.timeframe, r.full, r.range_start) for r in results] == [
        ("1m", False, TODAY),
        ("15m", False, TODAY),
    ]
    after = stored_bars(conn, "AAPL", "15m")
    assert after[: len(before)] == before
    assert len(after) == len(before) + 26  # the Monday session: 09:30 to 16:00 in 15 minutes


def test_a_week_holding_a_split_is_built_in_the_shares_of_its_last_day(conn, simulator, polygon):
    make_symbol(conn, "AAPL", timeframes=["1d", "1w"])
    simulator.add_split("AAPL", date(2024, 6, 5), 1, 4)  # a Wednesday

    service.run_units(
        service.plan_units(conn), source=PinnedConnection(conn), client=polygon, until=TODAY
    )

    week = next(
        row[:8]
        for row in stored_bars(conn, "AAPL", "1w")
        if row[0] == datetime(2024, 6, 2, 4, tzinfo=UTC)
    )
    # The provider's adjusted week: every day in post-split shares, as the stored week is.
    (provider,) = [
        (datetime.fromtimestamp(b.t / 1000, UTC), b.o, b.h, b.l, b.c, b.v, b.vw, b.n)
        for page in polygon.aggregates(
            "AAPL", 1, "week", date(2024, 6, 2), date(2024, 6, 8), adjusted=True
        )
        for b in page
    ]
    assert week == approx_rows([provider])[0]
    # Read split-adjusted, the week is divided by no later split: the same.
    read = conn.execute(
        "SELECT close FROM adjusted_bars WHERE symbol = 'AAPL' AND timeframe = '1w'"
        " AND time = '2024-06-02 04:00+00'"
    ).fetchone()
    assert read == (week[4],)
    # The week before it, all before the split, reads divided by 4 like its days.
    before = conn.execute(
        "SELECT w.close / d.close FROM adjusted_bars AS w JOIN adjusted_bars AS d"
        " ON d.symbol = w.symbol AND d.timeframe = '1d' AND d.time = '2024-05-31 04:00+00'"
        " WHERE w.symbol = 'AAPL' AND w.timeframe = '1w' AND w.time = '2024-05-26 04:00+00'"
    ).fetchone()
    assert before == (pytest.approx(1.0, rel=1e-12),)
