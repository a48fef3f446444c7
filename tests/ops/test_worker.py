"""The worker: one record's failure is its own, malformed bodies fail with a logged reason, a
completed identity is not run again, and grouped messages write only their symbols."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib import db
from chalicelib.backfill import repository as backfill_repository
from chalicelib.ops import worker
from chalicelib.polygon import PolygonClient
from devtools.polygon_sim import PolygonSimulator
from tests.factories import make_bars, make_symbol

FRIDAY = "2025-11-21"
THURSDAY_BAR = datetime(2025, 11, 20, 5, tzinfo=UTC)
FRIDAY_BAR = datetime(2025, 11, 21, 5, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("fast_client")


def record(message_id: str, body: Any) -> dict[str, Any]:
    return {"messageId": message_id, "body": body if isinstance(body, str) else json.dumps(body)}


def symbol_body(symbol: str, timeframe: str = "1d") -> dict[str, str]:
    return {"kind": "symbol", "symbol": symbol, "timeframe": timeframe, "window": FRIDAY}


def count(conn: db.Connection, query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def ledger(conn: db.Connection, target: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT completed_at IS NOT NULL, attempts, last_error FROM backfill_plan_messages"
        " WHERE target = %s",
        (target,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_symbol_message_writes_bars_up_to_its_window_and_completes(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])
    simulator.clear_log()

    answer = worker.handle_batch([record("m1", symbol_body("AAPL"))])

    assert answer == {"batchItemFailures": []}
    # From the newest stored bar to the message's window, whatever the worker's own date.
    assert [r.path for r in simulator.requests if r.path.startswith("/v2/")] == [
        f"/v2/aggs/ticker/AAPL/range/1/day/2025-11-20/{FRIDAY}"
    ]
    (run,) = pinned_db.execute("SELECT range_start, range_end FROM backfill_runs").fetchall()
    assert run == (date(2025, 11, 20), date(2025, 11, 21))
    assert count(pinned_db, "SELECT count(*) FROM bars WHERE symbol = 'AAPL'") == 2
    assert (
        count(
            pinned_db, "SELECT count(*) FROM bars WHERE symbol = 'AAPL' AND time = %s", FRIDAY_BAR
        )
        == 1
    )
    assert ledger(pinned_db, "AAPL") == (True, 1, None)


def test_a_redelivered_completed_message_changes_nothing(pinned_db: db.Connection) -> None:
    make_symbol(pinned_db, "AAPL")
    worker.handle_batch([record("m1", symbol_body("AAPL"))])
    runs = count(pinned_db, "SELECT count(*) FROM backfill_runs")
    bars = pinned_db.execute("SELECT time, close, updated_at FROM bars ORDER BY time").fetchall()

    answer = worker.handle_batch([record("m1-again", symbol_body("AAPL"))])

    assert answer == {"batchItemFailures": []}
    assert count(pinned_db, "SELECT count(*) FROM backfill_runs") == runs
    assert pinned_db.execute(
        "SELECT time, close, updated_at FROM bars ORDER BY time"
    ).fetchall() == (bars)
    assert ledger(pinned_db, "AAPL") == (True, 2, None)


def test_an_operator_requested_backfill_runs_even_after_the_plan_completed(
    pinned_db: db.Connection,
) -> None:
    make_symbol(pinned_db, "AAPL")
    worker.handle_batch([record("planned", symbol_body("AAPL"))])
    runs = count(pinned_db, "SELECT count(*) FROM backfill_runs")
    requested = {**symbol_body("AAPL"), "request_id": "req-42"}

    first = worker.handle_batch([record("asked-1", requested)])
    second = worker.handle_batch([record("asked-2", requested)])

    assert first == second == {"batchItemFailures": []}
    assert count(pinned_db, "SELECT count(*) FROM backfill_runs") == runs + 2
    assert ledger(pinned_db, "AAPL") == (True, 1, None)  # the plan's row, untouched


def test_malformed_messages_fail_alone_with_a_logged_reason(
    pinned_db: db.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])

    answer = worker.handle_batch(
        [
            record("not-json", "{not json"),
            record("unknown-symbol", symbol_body("ZZZZ")),
            record("unknown-timeframe", symbol_body("AAPL", timeframe="2d")),
            record("good", symbol_body("AAPL")),
        ]
    )

    assert answer == {
        "batchItemFailures": [
            {"itemIdentifier": "not-json"},
            {"itemIdentifier": "unknown-symbol"},
            {"itemIdentifier": "unknown-timeframe"},
        ]
    }
    assert ledger(pinned_db, "AAPL") == (True, 1, None)
    rejected = {
        line["message_id"]: line["reason"]
        for line in map(json.loads, capsys.readouterr().out.splitlines())
        if line["event"] == "backfill.message.rejected"
    }
    assert rejected["not-json"].startswith("malformed message: JSON is malformed")
    assert rejected["unknown-symbol"] == "not a tracked symbol: ZZZZ"
    assert rejected["unknown-timeframe"].startswith("malformed message: Invalid enum value '2d'")
    assert ledger(pinned_db, "ZZZZ") == (False, 1, "not a tracked symbol: ZZZZ")


def test_a_message_for_a_unit_that_may_not_run_is_rejected_with_the_service_s_reason(
    pinned_db: db.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    make_symbol(pinned_db, "IWM", asset_class="etf", active=False)
    make_symbol(pinned_db, "AAPL", timeframes=["1d"])

    answer = worker.handle_batch(
        [record("inactive", symbol_body("IWM")), record("no-1h", symbol_body("AAPL", "1h"))]
    )

    assert answer == {
        "batchItemFailures": [{"itemIdentifier": "inactive"}, {"itemIdentifier": "no-1h"}]
    }
    rejected = {
        line["message_id"]: line["reason"]
        for line in map(json.loads, capsys.readouterr().out.splitlines())
        if line["event"] == "backfill.message.rejected"
    }
    assert rejected == {
        "inactive": "symbol is deactivated: IWM; reactivate it to backfill it",
        "no-1h": "AAPL does not track the 1h timeframe",
    }
    assert count(pinned_db, "SELECT count(*) FROM backfill_runs") == 0


def test_a_provider_failure_reports_only_its_message(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    for symbol in ("AAPL", "MSFT"):
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, [THURSDAY_BAR])
    simulator.inject_fault("forbidden", ticker="MSFT", times=None)

    answer = worker.handle_batch(
        [record("a", symbol_body("AAPL")), record("m", symbol_body("MSFT"))]
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert ledger(pinned_db, "AAPL") == (True, 1, None)
    completed, attempts, error = ledger(pinned_db, "MSFT")
    assert (completed, attempts) == (False, 1)
    assert error.startswith("MSFT 1d: provider:")
    assert count(pinned_db, "SELECT count(*) FROM bars WHERE symbol = 'MSFT'") == 1


def test_a_grouped_message_writes_the_day_for_its_symbols_only(
    pinned_db: db.Connection, simulator: PolygonSimulator, fast_client: PolygonClient
) -> None:
    for symbol in ("AAPL", "MSFT", "NVDA"):
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, [THURSDAY_BAR])
    simulator.clear_log()
    body = {
        "kind": "grouped_daily",
        "market": "stocks",
        "window": FRIDAY,
        "symbols": ["AAPL", "MSFT"],
    }

    answer = worker.handle_batch([record("g", body)])

    assert answer == {"batchItemFailures": []}
    written = pinned_db.execute(
        "SELECT symbol FROM bars WHERE time = %s ORDER BY symbol", (FRIDAY_BAR,)
    ).fetchall()
    assert [row[0] for row in written] == ["AAPL", "MSFT"]
    bar_requests = [r.path for r in simulator.requests if r.path.startswith("/v2/")]
    assert bar_requests == [f"/v2/aggs/grouped/locale/us/market/stocks/{FRIDAY}"]
    assert ledger(pinned_db, "stocks") == (True, 1, None)


def test_a_grouped_message_stores_the_bulk_splits_of_its_symbols_only(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    for symbol in ("AAPL", "MSFT", "NVDA"):
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, [THURSDAY_BAR])
    simulator.add_split("AAPL", date(2025, 11, 21), 1, 4)
    simulator.add_split("MSFT", date(2025, 11, 20), 10, 1)
    simulator.add_split("NVDA", date(2025, 11, 21), 1, 2)  # tracked, but not in this message
    simulator.add_split("TSLA", date(2025, 11, 21), 1, 3)  # not tracked
    simulator.clear_log()
    body = {
        "kind": "grouped_daily",
        "market": "stocks",
        "window": FRIDAY,
        "symbols": ["AAPL", "MSFT"],
    }

    answer = worker.handle_batch([record("g", body)])
    again = worker.handle_batch([record("g2", body)])  # the same message delivered again

    assert answer == again == {"batchItemFailures": []}
    # One bulk lookup for the whole message (no ticker named), not one per symbol.
    lookups = [r.query for r in simulator.requests if r.path == "/v3/reference/splits"]
    assert [lookup.get("ticker") for lookup in lookups] == [None]
    stored = pinned_db.execute(
        "SELECT symbol, execution_date, split_from, split_to FROM splits ORDER BY symbol"
    ).fetchall()
    assert stored == [
        ("AAPL", date(2025, 11, 21), 1.0, 4.0),
        ("MSFT", date(2025, 11, 20), 10.0, 1.0),
    ]


def test_a_grouped_message_skips_symbols_that_may_no_longer_run(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "IWM", asset_class="etf", active=False)  # deactivated since the plan
    make_symbol(pinned_db, "MSFT", timeframes=["1h"])  # moved off 1d since the plan
    make_symbol(pinned_db, "BTC", asset_class="crypto")  # not a stocks symbol
    for symbol in ("AAPL", "IWM", "MSFT", "BTC"):
        make_bars(pinned_db, symbol, [THURSDAY_BAR])
    body = {
        "kind": "grouped_daily",
        "market": "stocks",
        "window": FRIDAY,
        "symbols": ["AAPL", "BTC", "IWM", "MSFT"],
    }

    answer = worker.handle_batch([record("g", body)])

    assert answer == {"batchItemFailures": []}
    written = pinned_db.execute("SELECT symbol FROM bars WHERE time = %s", (FRIDAY_BAR,))
    assert [row[0] for row in written] == ["AAPL"]
    runs = pinned_db.execute("SELECT symbol, status, range_start, range_end FROM backfill_runs")
    assert runs.fetchall() == [("AAPL", "completed", date(2025, 11, 20), date(2025, 11, 21))]
    assert ledger(pinned_db, "stocks") == (True, 1, None)


def test_a_message_for_a_timeframe_built_from_stored_bars_asks_the_provider_nothing(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1m", "30m"])
    worker.handle_batch([record("m1", symbol_body("AAPL", "1m"))])
    simulator.clear_log()

    answer = worker.handle_batch([record("m2", symbol_body("AAPL", "30m"))])

    assert answer == {"batchItemFailures": []}
    assert simulator.requests == []
    built = count(
        pinned_db, "SELECT count(*) FROM bars WHERE symbol = 'AAPL' AND timeframe = '30m'"
    )
    # One bar per half hour that has minute bars: 13 a session, over the minutes' 30 days.
    half_hours = count(
        pinned_db,
        "SELECT count(DISTINCT date_bin('30 minutes', time, '2000-01-01')) FROM bars"
        " WHERE symbol = 'AAPL' AND timeframe = '1m'",
    )
    assert built == half_hours > 13
    (requests,) = pinned_db.execute(
        "SELECT provider_requests FROM backfill_runs WHERE timeframe = '30m'"
    ).fetchone()
    assert requests == 0


def test_a_split_since_the_last_backfill_keeps_a_grouped_day_a_one_day_write(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])
    thursday = stored_close(pinned_db, THURSDAY_BAR)
    backfill_repository.mark_completed(
        pinned_db,
        symbol="AAPL",
        timeframe="1d",
        run_id=1,
        finished_at=datetime(2025, 11, 20, 23, tzinfo=UTC),
    )
    simulator.add_split("AAPL", date(2025, 11, 21), 1, 4)
    simulator.clear_log()
    body = {"kind": "grouped_daily", "market": "stocks", "window": FRIDAY, "symbols": ["AAPL"]}

    answer = worker.handle_batch([record("g", body)])

    assert answer == {"batchItemFailures": []}
    # Bars are stored as traded, so the split rewrites nothing: the grouped answer's one day is
    # all there is to fetch, and reads divide the Thursday bar by the ratio.
    assert not [r.path for r in simulator.requests if r.path.startswith("/v2/aggs/ticker/")]
    assert stored_close(pinned_db, THURSDAY_BAR) == thursday
    adjusted = pinned_db.execute(
        "SELECT close FROM adjusted_bars WHERE symbol = 'AAPL' AND time = %s", (THURSDAY_BAR,)
    ).fetchone()
    assert adjusted == (thursday / 4,)
    runs = pinned_db.execute("SELECT bars_written, range_start, range_end FROM backfill_runs")
    assert runs.fetchall() == [(1, date(2025, 11, 20), date(2025, 11, 21))]


def stored_close(conn: db.Connection, moment: datetime) -> float:
    row = conn.execute(
        "SELECT close FROM bars WHERE symbol = 'AAPL' AND time = %s", (moment,)
    ).fetchone()
    assert row is not None
    return float(row[0])


def test_the_grouped_bar_is_the_same_bar_the_range_endpoint_gives(
    pinned_db: db.Connection, fast_client: PolygonClient
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])
    body = {"kind": "grouped_daily", "market": "stocks", "window": FRIDAY, "symbols": ["AAPL"]}
    worker.handle_batch([record("g", body)])
    grouped = pinned_db.execute(
        "SELECT open, high, low, close, volume FROM bars WHERE symbol = 'AAPL' AND time = %s",
        (FRIDAY_BAR,),
    ).fetchone()

    (page,) = fast_client.aggregates("AAPL", 1, "day", date(2025, 11, 21), date(2025, 11, 21))

    (bar,) = page
    assert bar.t == int(FRIDAY_BAR.timestamp() * 1000)
    assert grouped == (bar.o, bar.h, bar.l, bar.c, bar.v)


def test_a_database_outage_fails_every_record_without_crashing(
    pinned_db: db.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1; the pinned_db fixture restores the container's database.
    db.set_database(db.Database("postgresql://mdw@127.0.0.1:1/nowhere", connect_timeout=1))

    answer = worker.handle_batch([record("a", symbol_body("AAPL")), record("b", "{}")])

    assert answer == {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}
    logged = {
        line["message_id"]: (line["event"], line["reason"])
        for line in map(json.loads, capsys.readouterr().out.splitlines())
    }
    # The well-formed message failed on the database; the malformed one never needed it.
    assert logged["a"][0] == "backfill.message.error"
    # The reason is the error's public message; the server's address is only in the log.
    assert logged["a"][1] == "the database is unavailable; retry shortly"
    assert logged["b"] == (
        "backfill.message.rejected",
        "malformed message: Object missing required field `kind`",
    )
