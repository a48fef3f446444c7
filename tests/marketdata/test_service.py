"""Pages of bars stay under Lambda's response limit and continue exactly where they stopped."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from chalicelib import db
from chalicelib.marketdata.cursor import Sort
from chalicelib.marketdata.models import BarsQuery, HistoricalQuery, LatestQuery
from chalicelib.marketdata.service import (
    LAMBDA_RESPONSE_LIMIT,
    bars_csv,
    bars_page,
    historical_csv,
    historical_page,
    latest_bars,
    wire_size,
)
from devtools.roundtrips import counting_round_trips
from tests.factories import make_bars, make_symbol

SEED_MINUTES = """
INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap, trades,
                  validated, flags)
SELECT 'AAPL', '1m', '2024-01-02T14:30:00Z'::timestamptz + n * interval '1 minute',
       187.123456 + n, 188.123456 + n, 186.123456 + n, 187.523456 + n, 12345.678 + n,
       187.323456 + n, 100 + n, true, '{}'
FROM generate_series(0, %(count)s - 1) AS n
"""


def minutes(count: int) -> list[datetime]:
    first = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    return [first + timedelta(minutes=n) for n in range(count)]


def decode(body: bytes) -> dict[str, object]:
    result: dict[str, object] = msgspec.json.decode(body)
    return result


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_page_cut_by_size_ends_on_a_whole_bar_and_the_cursor_continues(
    conn: db.Connection, sort: Sort
) -> None:
    make_symbol(conn, "AAPL", timeframes=["1m"])
    make_bars(conn, "AAPL", minutes(50), timeframe="1m")
    budget = 4000

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        body = historical_page(
            conn,
            "AAPL",
            HistoricalQuery(timeframe="1m", limit=1000, cursor=cursor, sort=sort),
            max_response_bytes=budget,
        )
        page = decode(body)
        pages += 1
        assert wire_size(body) <= budget
        assert page["count"] == len(page["bars"])  # type: ignore[arg-type]
        seen += [bar["time"] for bar in page["bars"]]  # type: ignore[attr-defined]
        cursor = page["next_cursor"]  # type: ignore[assignment]
        if cursor is None:
            break

    assert pages > 2
    expected = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in minutes(50)]
    assert seen == (expected if sort == "asc" else expected[::-1])


def test_a_full_minute_page_stays_under_the_lambda_limit(conn: db.Connection) -> None:
    make_symbol(conn, "AAPL", timeframes=["1m"])
    conn.execute(SEED_MINUTES, {"count": 45_000})

    body = historical_page(conn, "AAPL", HistoricalQuery(timeframe="1m", limit=100_000))

    page = decode(body)
    # The payload Lambda returns: the body as a JSON string inside the proxy envelope.
    envelope = json.dumps(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {},
            "body": body.decode(),
        }
    )
    assert len(envelope.encode()) <= LAMBDA_RESPONSE_LIMIT
    assert len(envelope.encode()) > LAMBDA_RESPONSE_LIMIT * 0.95
    assert 0 < page["count"] < 45_000  # type: ignore[operator]
    assert page["next_cursor"] is not None


def test_page_without_more_bars_has_no_cursor(conn: db.Connection) -> None:
    make_symbol(conn, "AAPL")
    make_bars(conn, "AAPL", [datetime(2024, 1, 2, 5, tzinfo=UTC)])

    page = decode(historical_page(conn, "AAPL", HistoricalQuery(limit=1)))

    assert page["count"] == 1
    assert page["next_cursor"] is None


def test_end_date_is_inclusive_through_the_last_minute_of_the_day(conn: db.Connection) -> None:
    make_symbol(conn, "BTC", asset_class="crypto", timeframes=["1m"])
    make_bars(
        conn,
        "BTC",
        [datetime(2024, 1, 1, 23, 59, tzinfo=UTC), datetime(2024, 1, 2, 0, 0, tzinfo=UTC)],
        timeframe="1m",
    )

    page = decode(
        historical_page(
            conn,
            "btc",
            HistoricalQuery(timeframe="1m", start="2024-01-01", end="2024-01-01"),
        )
    )

    assert [bar["time"] for bar in page["bars"]] == ["2024-01-01T23:59:00Z"]  # type: ignore[attr-defined]


def test_latest_of_100_symbols_is_one_round_trip(conn: db.Connection) -> None:
    symbols = [f"S{n:03d}" for n in range(100)]
    for symbol in symbols:
        make_symbol(conn, symbol)
        make_bars(conn, symbol, [datetime(2024, 1, day, 5, tzinfo=UTC) for day in (2, 3)])

    with counting_round_trips(conn) as counted:
        latest = latest_bars(conn, LatestQuery(symbols=",".join(reversed(symbols))))

    assert counted.count == 1
    assert [bar.symbol for bar in latest.bars] == symbols
    assert {bar.time for bar in latest.bars} == {datetime(2024, 1, 3, 5, tzinfo=UTC)}


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_a_bars_page_cut_by_size_ends_on_a_whole_row_and_continues_across_symbols(
    conn: db.Connection, sort: Sort
) -> None:
    for symbol in ("AAPL", "MSFT", "NVDA"):
        make_symbol(conn, symbol, timeframes=["1m"])
        make_bars(conn, symbol, minutes(20), timeframe="1m")
    budget = 3000
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = BarsQuery(symbols="NVDA,AAPL,MSFT", timeframe="1m", cursor=cursor, sort=sort)
        body = bars_page(conn, query, max_response_bytes=budget)
        page = decode(body)
        pages += 1
        assert wire_size(body) <= budget
        assert page["count"] == len(page["bars"])  # type: ignore[arg-type]
        seen += [(row["symbol"], row["time"]) for row in page["bars"]]  # type: ignore[attr-defined]
        cursor = page["next_cursor"]  # type: ignore[assignment]
        if cursor is None:
            break

    assert pages > 3
    times = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in minutes(20)]
    if sort == "desc":
        times.reverse()
    assert seen == [(symbol, t) for symbol in ("AAPL", "MSFT", "NVDA") for t in times]


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_a_csv_page_cut_by_size_ends_on_a_whole_line_and_the_cursor_continues(
    conn: db.Connection, sort: Sort
) -> None:
    for symbol in ("AAPL", "MSFT"):
        make_symbol(conn, symbol, timeframes=["1m"])
        make_bars(conn, symbol, minutes(30), timeframe="1m")
    budget = 1500
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = BarsQuery(symbols="MSFT,AAPL", timeframe="1m", cursor=cursor, sort=sort)
        page = bars_csv(conn, query, max_response_bytes=budget)
        pages += 1
        assert wire_size(page.body) <= budget
        lines = page.body.decode().splitlines()
        assert lines[0].startswith("symbol,time,open")
        seen += [",".join(line.split(",")[:2]) for line in lines[1:]]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert pages > 3
    times = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in minutes(30)]
    if sort == "desc":
        times.reverse()
    assert seen == [f"{symbol},{t}" for symbol in ("AAPL", "MSFT") for t in times]


def test_a_csv_page_has_the_json_pages_values(conn: db.Connection) -> None:
    make_symbol(conn, "AAPL", timeframes=["1m"])
    conn.execute(SEED_MINUTES, {"count": 500})

    as_json = decode(historical_page(conn, "AAPL", HistoricalQuery(timeframe="1m", limit=500)))
    as_csv = historical_csv(conn, "AAPL", HistoricalQuery(timeframe="1m", limit=500))

    rows = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert len(rows) == 500
    for bar, row in zip(as_json["bars"], rows, strict=True):  # type: ignore[call-overload]
        assert row["time"] == bar["time"]
        for key in ("open", "high", "low", "close", "volume", "vwap"):
            assert float(row[key]) == bar[key]
        assert int(row["trades"]) == bar["trades"]
        assert row["validated"] == "true"
        assert row["flags"] == ""
