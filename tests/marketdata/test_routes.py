"""GET /api/v1/symbols, /api/v1/historical/{symbol} and /api/v1/status over HTTP."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urljoin

import pytest

from chalicelib import db
from chalicelib.marketdata.models import MAX_PAGE_LIMIT
from tests.factories import daily_times, make_bars, make_key, make_symbol


def auth(conn: db.Connection) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(conn).raw_key}"}


def get(client: Any, path: str, headers: dict[str, str]) -> Any:
    return client.http.get(path, headers=headers)


@pytest.fixture
def reader(client: Any, pinned_db: db.Connection) -> dict[str, str]:
    return auth(pinned_db)


def bar_count(conn: db.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM bars").fetchone()
    assert row is not None
    return int(row[0])


def set_backfill_state(
    conn: db.Connection,
    symbol: str,
    timeframe: str,
    status: str,
    last_backfill: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO backfill_state (symbol, timeframe, status, last_backfill)"
        " VALUES (%s, %s, %s, %s)",
        (symbol, timeframe, status, last_backfill),
    )


# --- /api/v1/historical/{symbol} ---------------------------------------------------------------


def test_historical_returns_bars_oldest_first_within_inclusive_dates(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))

    response = get(client, "/api/v1/historical/AAPL?start=2024-01-03&end=2024-01-05", reader)

    assert response.status_code == 200
    body = response.json_body
    assert [bar["time"] for bar in body["bars"]] == [
        "2024-01-03T05:00:00Z",
        "2024-01-04T05:00:00Z",
        "2024-01-05T05:00:00Z",
    ]
    assert body["count"] == 3
    assert body["symbol"] == "AAPL"
    assert body["timeframe"] == "1d"
    assert body["start"] == "2024-01-03"
    assert body["end"] == "2024-01-05"
    assert body["next_cursor"] is None
    assert body["bars"][0] == {
        "time": "2024-01-03T05:00:00Z",
        "open": 100.02,
        "high": 101.02,
        "low": 99.02,
        "close": 100.52,
        "volume": 1002.0,
        "vwap": 100.02,
        "trades": 12,
        "validated": True,
        "flags": [],
    }


def test_historical_accepts_crypto_aliases(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    make_bars(pinned_db, "BTC", daily_times(date(2024, 1, 1), 2, hour=0))

    for alias in ("btc-usd", "X:BTCUSD", "btc"):
        response = get(client, f"/api/v1/historical/{alias}", reader)
        assert response.status_code == 200, alias
        assert response.json_body["symbol"] == "BTC"
        assert response.json_body["count"] == 2


def test_historical_hides_unvalidated_bars_unless_asked(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3), validated=[True, False, True])

    default = get(client, "/api/v1/historical/AAPL", reader).json_body
    everything = get(client, "/api/v1/historical/AAPL?validated_only=false", reader).json_body

    assert [bar["time"][:10] for bar in default["bars"]] == ["2024-01-01", "2024-01-03"]
    assert [bar["validated"] for bar in everything["bars"]] == [True, False, True]


def test_historical_pages_with_cursor_and_is_stable_under_inserts(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 10), 5))

    first = get(client, "/api/v1/historical/AAPL?limit=2", reader).json_body
    # A bar inserted before the cursor's position must not shift the next page.
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 1))
    second = get(
        client, f"/api/v1/historical/AAPL?limit=2&cursor={first['next_cursor']}", reader
    ).json_body
    third = get(
        client, f"/api/v1/historical/AAPL?limit=2&cursor={second['next_cursor']}", reader
    ).json_body

    days = [bar["time"][:10] for page in (first, second, third) for bar in page["bars"]]
    assert days == ["2024-01-10", "2024-01-11", "2024-01-12", "2024-01-13", "2024-01-14"]
    assert third["next_cursor"] is None


def test_historical_unknown_symbol_is_404(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    response = get(client, "/api/v1/historical/NOPE", reader)

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "query",
    [
        "timeframe=2m",
        "start=2024-02-01&end=2024-01-01",
        "start=2024-13-01",
        "end=yesterday",
        "limit=0",
        "limit=-5",
        f"limit={MAX_PAGE_LIMIT + 1}",
        "limit=ten",
        "validated_only=maybe",
        "cursor=forged",
        "cursor=eyJhIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA",
        "colour=blue",
    ],
)
def test_historical_bad_query_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], query: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))

    response = get(client, f"/api/v1/historical/AAPL?{query}", reader)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert bar_count(pinned_db) == 3


def test_historical_cursor_from_another_query_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))
    cursor = get(client, "/api/v1/historical/AAPL?limit=1", reader).json_body["next_cursor"]

    response = get(
        client, f"/api/v1/historical/AAPL?limit=1&start=2024-01-02&cursor={cursor}", reader
    )

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert "different query" in response.json_body["error"]["message"]


def test_historical_minute_bars_allow_larger_pages(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1m"])
    set_backfill_state(pinned_db, "AAPL", "1m", "completed", datetime(2024, 3, 2, tzinfo=UTC))

    response = get(
        client, f"/api/v1/historical/AAPL?timeframe=1m&limit={MAX_PAGE_LIMIT + 1}", reader
    )

    assert response.status_code == 200
    assert response.json_body["count"] == 0


def test_an_unknown_timeframe_is_400_listing_the_allowed_ones(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")

    response = get(client, "/api/v1/historical/AAPL?timeframe=2d", reader)

    assert response.status_code == 400
    assert response.json_body == {
        "error": {
            "code": "bad_request",
            "message": "invalid query parameter: timeframe must be one of "
            "1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w; got '2d'",
            "details": {
                "field": "timeframe",
                "allowed": ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"],
            },
        }
    }


def test_an_untracked_timeframe_is_404_naming_the_tracked_ones(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1w"])
    set_backfill_state(pinned_db, "AAPL", "1d", "completed", datetime(2024, 3, 2, tzinfo=UTC))
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    response = get(client, "/api/v1/historical/AAPL?timeframe=1h", reader)

    assert response.status_code == 404
    assert response.json_body == {
        "error": {
            "code": "not_found",
            "message": "AAPL is not tracked at 1h; its timeframes are 1d, 1w (an admin can "
            "add 1h with PUT /api/v1/admin/symbols/AAPL)",
            "details": {"symbol": "AAPL", "timeframe": "1h", "tracked_timeframes": ["1d", "1w"]},
        }
    }


def test_bars_kept_from_a_timeframe_no_longer_tracked_are_still_served(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1w"])
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    response = get(client, "/api/v1/historical/AAPL?timeframe=1d", reader)

    assert response.status_code == 200
    assert response.json_body["count"] == 2


@pytest.mark.parametrize("state", [None, "pending", "in_progress", "failed"])
def test_a_timeframe_never_backfilled_is_404_saying_so(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], state: str | None
) -> None:
    make_symbol(pinned_db, "IBM")
    if state is not None:
        set_backfill_state(pinned_db, "IBM", "1d", state)

    response = get(client, "/api/v1/historical/ibm?start=2024-01-01", reader)

    assert response.status_code == 404
    shown = state or "pending"
    assert response.json_body == {
        "error": {
            "code": "not_found",
            "message": f"IBM has no 1d bars yet: its first backfill has not completed (backfill "
            f"status {shown}). Bars arrive with the next scheduled backfill; an admin can "
            "start one now with POST /api/v1/admin/symbols/IBM/backfill",
            "details": {"symbol": "IBM", "timeframe": "1d", "backfill_status": shown},
        }
    }


def test_a_backfilled_range_without_bars_is_an_empty_200(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    # A completed backfill that found nothing (a ticker listed yesterday) and a range with no
    # sessions in it are both real answers: nothing traded.
    make_symbol(pinned_db, "NEW")
    set_backfill_state(pinned_db, "NEW", "1d", "completed", datetime(2024, 3, 2, tzinfo=UTC))
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    new = get(client, "/api/v1/historical/NEW", reader)
    weekend = get(client, "/api/v1/historical/AAPL?start=2023-12-30&end=2023-12-31", reader)

    assert (new.status_code, new.json_body["count"]) == (200, 0)
    assert (weekend.status_code, weekend.json_body["count"]) == (200, 0)


def test_historical_without_key_is_401(client: Any, pinned_db: db.Connection) -> None:
    response = client.http.get("/api/v1/historical/AAPL")

    assert response.status_code == 401


# --- /api/v1/symbols ---------------------------------------------------------------------------


def test_symbols_lists_active_symbols_with_first_and_last_bar(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1h"])
    make_symbol(pinned_db, "ETH", asset_class="crypto")
    make_symbol(pinned_db, "OLD", active=False)
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))
    make_bars(pinned_db, "AAPL", [datetime(2024, 1, 5, 15, tzinfo=UTC)], timeframe="1h")
    set_backfill_state(pinned_db, "AAPL", "1d", "completed", datetime(2024, 1, 6, tzinfo=UTC))
    set_backfill_state(pinned_db, "AAPL", "1m", "completed")  # no longer tracked
    pinned_db.execute(
        "INSERT INTO backfill_state (symbol, timeframe, status, last_error)"
        " VALUES ('AAPL', '1h', 'failed', 'provider said <no>')"
    )

    response = get(client, "/api/v1/symbols", reader)

    assert response.status_code == 200
    assert response.json_body == {
        "symbols": [
            {
                "symbol": "AAPL",
                "asset_class": "stock",
                "timeframes": ["1d", "1h"],
                "first_bar": "2024-01-01T05:00:00Z",
                "last_bar": "2024-01-05T15:00:00Z",
                "backfill": {
                    "1d": {
                        "status": "completed",
                        "last_backfill": "2024-01-06T00:00:00Z",
                        "last_error": None,
                    },
                    "1h": {
                        "status": "failed",
                        "last_backfill": None,
                        "last_error": "provider said <no>",
                    },
                },
            },
            {
                "symbol": "ETH",
                "asset_class": "crypto",
                "timeframes": ["1d"],
                "first_bar": None,
                "last_bar": None,
                # Just added: no backfill_state row yet.
                "backfill": {
                    "1d": {"status": "pending", "last_backfill": None, "last_error": None}
                },
            },
        ],
        "count": 2,
    }


# --- /api/v1/symbols/{symbol} ------------------------------------------------------------------


def test_symbol_shows_backfill_stats_and_the_missing_daily_sessions(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1h"])
    make_symbol(pinned_db, "MSFT")
    # Tue 2 Jan to Mon 8 Jan 2024 with Thursday the 4th missing; the weekend is no gap.
    days = [date(2024, 1, d) for d in (2, 3, 5, 8)]
    make_bars(
        pinned_db,
        "AAPL",
        [datetime(d.year, d.month, d.day, 5, tzinfo=UTC) for d in days],
        validated=[True, True, True, False],
    )
    make_bars(pinned_db, "MSFT", daily_times(date(2024, 1, 2), 2))
    set_backfill_state(pinned_db, "AAPL", "1d", "completed", datetime(2024, 1, 9, tzinfo=UTC))

    response = get(client, "/api/v1/symbols/aapl", reader)

    assert response.status_code == 200
    assert response.json_body == {
        "symbol": "AAPL",
        "asset_class": "stock",
        "timeframes": ["1d", "1h"],
        "first_bar": "2024-01-02T05:00:00Z",
        "last_bar": "2024-01-08T05:00:00Z",
        "backfill": {
            "1d": {
                "status": "completed",
                "last_backfill": "2024-01-09T00:00:00Z",
                "last_error": None,
            },
            "1h": {"status": "pending", "last_backfill": None, "last_error": None},
        },
        "stats": {
            "1d": {
                "record_count": 4,
                "date_range": {"first": "2024-01-02T05:00:00Z", "last": "2024-01-08T05:00:00Z"},
                "validation_rate": 0.75,
                "gaps_detected": 1,
                "missing_sessions": ["2024-01-04"],
            },
            "1h": {
                "record_count": 0,
                "date_range": {"first": None, "last": None},
                "validation_rate": None,
                "gaps_detected": None,
                "missing_sessions": None,
            },
        },
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/symbols/NOPE", "NOPE is not a tracked symbol"),
        ("/api/v1/symbols/OLD", "OLD is not active"),
    ],
)
def test_symbol_that_is_not_tracked_or_not_active_is_404(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], path: str, message: str
) -> None:
    make_symbol(pinned_db, "OLD", active=False)

    response = get(client, path, reader)

    assert response.status_code == 404
    assert response.json_body["error"]["message"] == message


# --- /api/v1/status ----------------------------------------------------------------------------


def test_status_reports_backfill_states_stalest_symbol_last_run_and_validation(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(
        pinned_db,
        "AAPL",
        backfill_status="completed",
        last_backfill=datetime(2024, 3, 2, tzinfo=UTC),
    )
    make_symbol(
        pinned_db,
        "MSFT",
        backfill_status="completed",
        last_backfill=datetime(2024, 3, 1, tzinfo=UTC),
    )
    make_symbol(
        pinned_db, "TSLA", backfill_status="failed", last_backfill=datetime(2024, 3, 3, tzinfo=UTC)
    )
    make_bars(
        pinned_db, "AAPL", daily_times(date(2024, 1, 1), 4), validated=[True, True, True, False]
    )
    pinned_db.execute(
        """
        INSERT INTO backfill_runs (symbol, timeframe, status, started_at, finished_at,
                                   bars_written, provider_requests, error)
        VALUES ('AAPL', '1d', 'completed', '2024-03-02T00:00Z', '2024-03-02T00:01Z', 4, 1, NULL),
               ('TSLA', '1d', 'failed', '2024-03-03T00:00Z', '2024-03-03T00:01Z', 0, 3, 'boom')
        """
    )

    response = get(client, "/api/v1/status", reader)

    assert response.status_code == 200
    body = response.json_body
    assert body["symbols"]["total"] == 3
    assert body["symbols"]["by_backfill_status"] == {"completed": 2, "failed": 1}
    assert body["stalest_symbol"] == {
        "symbol": "MSFT",
        "backfill_status": "completed",
        "last_backfill": "2024-03-01T00:00:00Z",
    }
    assert body["last_run"]["symbol"] == "TSLA"
    assert body["last_run"]["status"] == "failed"
    assert body["last_run"]["error"] == "boom"
    assert [(r["symbol"], r["status"], r["error"]) for r in body["recent_runs"]] == [
        ("TSLA", "failed", "boom"),
        ("AAPL", "completed", None),
    ]
    assert body["recent_runs"][0] == body["last_run"]
    assert body["bars"] == 4
    assert body["validated_bars"] == 3
    assert body["validation_rate"] == 0.75


def test_status_lists_the_ten_newest_runs(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    pinned_db.execute(
        """
        INSERT INTO backfill_runs (symbol, timeframe, status, started_at, bars_written,
                                   provider_requests)
        SELECT 'AAPL', '1d', 'completed', timestamptz '2024-03-01' + n * interval '1 hour', n, 1
        FROM generate_series(1, 12) AS n
        """
    )

    runs = get(client, "/api/v1/status", reader).json_body["recent_runs"]

    assert [run["bars_written"] for run in runs] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3]


def test_status_counts_every_tracked_timeframe_pending_included(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1h", "1w"])
    make_symbol(pinned_db, "IBM", timeframes=["1d", "4h"])  # just added: no state rows yet
    make_symbol(pinned_db, "OLD", timeframes=["1d"], active=False)
    set_backfill_state(pinned_db, "AAPL", "1d", "completed", datetime(2024, 3, 2, tzinfo=UTC))
    set_backfill_state(pinned_db, "AAPL", "1h", "failed")
    set_backfill_state(pinned_db, "AAPL", "1m", "completed")  # no longer tracked
    set_backfill_state(pinned_db, "OLD", "1d", "completed")  # inactive symbol

    body = get(client, "/api/v1/status", reader).json_body

    assert body["symbols"]["timeframes_by_backfill_status"] == {
        "completed": 1,
        "failed": 1,
        "pending": 3,
    }


def test_status_on_an_empty_warehouse(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    body = get(client, "/api/v1/status", reader).json_body

    assert body == {
        "symbols": {"total": 0, "by_backfill_status": {}, "timeframes_by_backfill_status": {}},
        "stalest_symbol": None,
        "last_run": None,
        "recent_runs": [],
        "bars": 0,
        "validated_bars": 0,
        "validation_rate": None,
    }


def test_responses_are_json(client: Any, pinned_db: db.Connection, reader: dict[str, str]) -> None:
    response = get(client, "/api/v1/status", reader)

    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body)["bars"] == 0


def test_historical_with_the_last_representable_end_date_is_served(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))

    response = get(client, "/api/v1/historical/AAPL?start=2024-01-02&end=9999-12-31", reader)

    assert response.status_code == 200
    assert [bar["time"] for bar in response.json_body["bars"]] == [
        "2024-01-02T05:00:00Z",
        "2024-01-03T05:00:00Z",
    ]


# --- sort, limit, and start/end as dates, datetimes or epoch ms ---------------------------------


def bar_times(body: dict[str, Any]) -> list[str]:
    return [bar["time"] for bar in body["bars"]]


def test_sort_desc_with_limit_returns_the_newest_bars_newest_first(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))

    body = get(client, "/api/v1/historical/AAPL?sort=desc&limit=3", reader).json_body

    assert bar_times(body) == [
        "2024-01-10T05:00:00Z",
        "2024-01-09T05:00:00Z",
        "2024-01-08T05:00:00Z",
    ]
    assert body["next_cursor"] is not None


def test_sort_desc_pages_backwards_through_the_range_without_repeats(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))
    seen: list[str] = []
    path = "/api/v1/historical/AAPL?sort=desc&limit=4&start=2024-01-02&end=2024-01-08"
    cursor = None
    while True:
        body = get(client, path + (f"&cursor={cursor}" if cursor else ""), reader).json_body
        seen += bar_times(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == [f"2024-01-0{day}T05:00:00Z" for day in range(8, 1, -1)]


def test_a_cursor_keeps_its_sort(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 5))
    cursor = get(client, "/api/v1/historical/AAPL?limit=2", reader).json_body["next_cursor"]

    response = get(client, f"/api/v1/historical/AAPL?limit=2&sort=desc&cursor={cursor}", reader)

    assert response.status_code == 400
    assert "different query" in response.json_body["error"]["message"]


@pytest.mark.parametrize(
    ("start", "end", "expected_days", "echo"),
    [
        pytest.param("2024-01-03", "2024-01-04", [3, 4], ("2024-01-03", "2024-01-04"), id="dates"),
        pytest.param(
            "2024-01-03T05:00:00Z",
            "2024-01-05T05:00:00Z",
            [3, 4, 5],
            ("2024-01-03T05:00:00Z", "2024-01-05T05:00:00Z"),
            id="instants-inclusive",
        ),
        pytest.param(
            "2024-01-03T05:00:00.000001Z",
            "2024-01-05T04:59:59Z",
            [4],
            ("2024-01-03T05:00:00.000001Z", "2024-01-05T04:59:59Z"),
            id="instants-exclusive-by-a-hair",
        ),
        pytest.param(
            "2024-01-03T00:00:00-05:00",
            "2024-01-04T00:00:00-05:00",
            [3, 4],
            ("2024-01-03T05:00:00Z", "2024-01-04T05:00:00Z"),
            id="offsets-become-utc",
        ),
        pytest.param(
            "1704258000000",
            "1704344400000",
            [3, 4],
            ("2024-01-03T05:00:00Z", "2024-01-04T05:00:00Z"),
            id="epoch-ms",
        ),
    ],
)
def test_start_and_end_accept_dates_datetimes_and_epoch_ms(
    client: Any,
    pinned_db: db.Connection,
    reader: dict[str, str],
    start: str,
    end: str,
    expected_days: list[int],
    echo: tuple[str, str],
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))

    body = get(
        client, f"/api/v1/historical/AAPL?start={quote(start)}&end={quote(end)}", reader
    ).json_body

    assert bar_times(body) == [f"2024-01-0{day}T05:00:00Z" for day in expected_days]
    assert (body["start"], body["end"]) == echo


def test_an_epoch_ms_and_a_datetime_for_the_same_instant_share_cursors(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 5))
    first = get(client, "/api/v1/historical/AAPL?limit=2&start=1704085200000", reader).json_body

    second = get(
        client,
        "/api/v1/historical/AAPL?limit=2&start=2024-01-01T05%3A00%3A00Z"
        f"&cursor={first['next_cursor']}",
        reader,
    ).json_body

    assert bar_times(second) == ["2024-01-03T05:00:00Z", "2024-01-04T05:00:00Z"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("sort=down", "sort"),
        ("sort=", "sort"),
        ("start=2024-01-05T10:00:00", "start"),  # no zone: ambiguous
        ("start=2024-01-05T25:00:00Z", "start"),
        ("start=2024-1-5", "start"),
        ("start=-1000", "start"),
        ("start=1.5e12", "start"),
        ("start=", "start"),
        ("end=99999999999999999", "end"),
        ("end=2024-01-05T10:00Z", "end"),
        ("start=1704412800000&end=2024-01-04", "start"),
        ("start=2024-01-05T00:00:00Z&end=2024-01-04T23:59:59.999999Z", "start"),
    ],
)
def test_bad_sort_and_bounds_are_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], query: str, parameter: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))

    response = get(client, f"/api/v1/historical/AAPL?{query.replace('+', '%2B')}", reader)

    assert response.status_code == 400
    error = response.json_body["error"]
    assert error["code"] == "bad_request"
    assert parameter in error["message"]


# --- /api/v1/latest ------------------------------------------------------------------------------


def test_latest_returns_each_symbols_last_bar_ordered_by_symbol(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "MSFT")
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))
    make_bars(pinned_db, "MSFT", daily_times(date(2024, 1, 1), 4), price=400.0)
    make_bars(pinned_db, "BTC", daily_times(date(2024, 1, 1), 6, hour=0), price=40000.0)

    response = get(client, "/api/v1/latest?symbols=msft,X:BTCUSD,AAPL", reader)

    assert response.status_code == 200
    body = response.json_body
    assert body["timeframe"] == "1d"
    assert body["count"] == 3
    assert [(bar["symbol"], bar["time"], bar["close"]) for bar in body["bars"]] == [
        ("AAPL", "2024-01-10T05:00:00Z", 100.59),
        ("BTC", "2024-01-06T00:00:00Z", 40000.55),
        ("MSFT", "2024-01-04T05:00:00Z", 400.53),
    ]
    assert set(body["bars"][0]) == {
        "symbol",
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trades",
        "validated",
        "flags",
    }


def test_latest_skips_unvalidated_bars_unless_asked(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3), validated=[True, True, False])

    validated = get(client, "/api/v1/latest?symbols=AAPL", reader).json_body
    any_bar = get(client, "/api/v1/latest?symbols=AAPL&validated_only=false", reader).json_body

    assert validated["bars"][0]["time"] == "2024-01-02T05:00:00Z"
    assert any_bar["bars"][0]["time"] == "2024-01-03T05:00:00Z"


def test_latest_with_unknown_symbols_mixed_in_is_404_naming_them(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))

    response = get(client, "/api/v1/latest?symbols=AAPL,ZZZZ,QQQQ", reader)

    assert response.status_code == 404
    error = response.json_body["error"]
    assert error["details"] == {"unknown_symbols": ["QQQQ", "ZZZZ"]}
    assert "QQQQ, ZZZZ" in error["message"]


def test_latest_for_symbols_with_nothing_to_read_yet_is_404_saying_why(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "MSFT")
    make_symbol(pinned_db, "NVDA", timeframes=["1d", "1h"])
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3), timeframe="1h")

    response = get(client, "/api/v1/latest?symbols=AAPL,MSFT,NVDA&timeframe=1h", reader)

    assert response.status_code == 404
    details = response.json_body["error"]["details"]
    assert details["timeframe"] == "1h"
    assert details["symbols"] == [
        {"symbol": "MSFT", "timeframe": "1h", "tracked_timeframes": ["1d"]},
        {"symbol": "NVDA", "timeframe": "1h", "backfill_status": "pending"},
    ]


def test_latest_for_one_symbol_not_yet_backfilled_has_the_historical_message(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")

    response = get(client, "/api/v1/latest?symbols=AAPL", reader)

    assert response.status_code == 404
    assert response.json_body["error"]["details"] == {
        "symbol": "AAPL",
        "timeframe": "1d",
        "backfill_status": "pending",
    }
    assert "first backfill has not completed" in response.json_body["error"]["message"]


def hundred_symbols(count: int) -> str:
    return ",".join(f"S{n:03d}" for n in range(count))


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f"symbols={hundred_symbols(101)}", "at most 100"),
        ("symbols=AAPL,MSFT,AAPL", "more than once: AAPL"),
        ("symbols=BTC,x:btcusd", "x:btcusd (same as BTC)"),
        ("symbols=AAPL,,MSFT", "no empty item"),
        ("symbols=", "no empty item"),
        ("symbols=AAPL,THIS-IS-FAR-TOO-LONG", "symbols: symbol must be"),
        ("timeframe=1d", "symbols"),
        ("symbols=AAPL&timeframe=2d", "timeframe must be one of"),
        ("symbols=AAPL&validated_only=perhaps", "validated_only"),
        ("symbols=AAPL&limit=5", "limit"),
    ],
)
def test_latest_bad_query_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], query: str, words: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "MSFT")
    make_symbol(pinned_db, "BTC", asset_class="crypto")

    response = get(client, f"/api/v1/latest?{query}", reader)

    assert response.status_code == 400
    assert words in response.json_body["error"]["message"]


def test_latest_accepts_exactly_100_symbols(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    for n in range(100):
        make_symbol(pinned_db, f"S{n:03d}")
        make_bars(pinned_db, f"S{n:03d}", daily_times(date(2024, 1, 1), 2))

    response = get(client, f"/api/v1/latest?symbols={hundred_symbols(100)}", reader)

    assert response.status_code == 200
    assert response.json_body["count"] == 100


# --- /api/v1/bars ---------------------------------------------------------------------------------


def three_symbols(conn: db.Connection) -> None:
    make_symbol(conn, "MSFT")
    make_symbol(conn, "AAPL")
    make_symbol(conn, "SPY", asset_class="etf")
    make_bars(conn, "AAPL", daily_times(date(2024, 1, 1), 4))
    make_bars(conn, "MSFT", daily_times(date(2024, 1, 1), 3), price=400.0)
    make_bars(conn, "SPY", daily_times(date(2024, 1, 2), 2), price=470.0)


def rows_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row["symbol"], row["time"][:10]) for row in body["bars"]]


def test_bars_returns_long_rows_ordered_by_symbol_then_time(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    three_symbols(pinned_db)

    response = get(
        client, "/api/v1/bars?symbols=spy,MSFT,AAPL&start=2024-01-02&end=2024-01-03", reader
    )

    assert response.status_code == 200
    body = response.json_body
    assert rows_of(body) == [
        ("AAPL", "2024-01-02"),
        ("AAPL", "2024-01-03"),
        ("MSFT", "2024-01-02"),
        ("MSFT", "2024-01-03"),
        ("SPY", "2024-01-02"),
        ("SPY", "2024-01-03"),
    ]
    assert body["symbols"] == ["AAPL", "MSFT", "SPY"]
    assert body["count"] == 6
    assert body["next_cursor"] is None
    assert body["bars"][2] == {
        "symbol": "MSFT",
        "time": "2024-01-02T05:00:00Z",
        "open": 400.01,
        "high": 401.01,
        "low": 399.01,
        "close": 400.51,
        "volume": 1001.0,
        "vwap": 400.01,
        "trades": 11,
        "validated": True,
        "flags": [],
    }


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_bars_pages_across_symbols_without_repeats_or_gaps(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], sort: str, limit: int
) -> None:
    three_symbols(pinned_db)
    everything = rows_of(
        get(client, f"/api/v1/bars?symbols=AAPL,MSFT,SPY&sort={sort}", reader).json_body
    )
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        path = f"/api/v1/bars?symbols=AAPL,MSFT,SPY&sort={sort}&limit={limit}"
        body = get(client, path + (f"&cursor={cursor}" if cursor else ""), reader).json_body
        assert body["count"] <= limit
        seen += rows_of(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert len(everything) == 9
    assert seen == everything
    by_symbol = [s for s, _ in everything]
    assert by_symbol == sorted(by_symbol)
    aapl_days = [d for s, d in everything if s == "AAPL"]
    assert aapl_days == sorted(aapl_days, reverse=sort == "desc")


def test_a_bars_cursor_is_bound_to_its_symbol_list(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    three_symbols(pinned_db)
    cursor = get(client, "/api/v1/bars?symbols=AAPL,MSFT&limit=2", reader).json_body["next_cursor"]

    same_set = get(client, f"/api/v1/bars?symbols=MSFT,aapl&limit=2&cursor={cursor}", reader)
    other_set = get(client, f"/api/v1/bars?symbols=AAPL,SPY&limit=2&cursor={cursor}", reader)

    assert same_set.status_code == 200
    assert rows_of(same_set.json_body) == [("AAPL", "2024-01-03"), ("AAPL", "2024-01-04")]
    assert other_set.status_code == 400
    assert "different query" in other_set.json_body["error"]["message"]


def test_bars_with_unknown_symbols_mixed_in_is_404_naming_them(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    three_symbols(pinned_db)

    response = get(client, "/api/v1/bars?symbols=AAPL,NOPE,MSFT", reader)

    assert response.status_code == 404
    assert response.json_body["error"]["details"] == {"unknown_symbols": ["NOPE"]}


def test_bars_for_an_untracked_timeframe_is_404_naming_the_symbol(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    three_symbols(pinned_db)
    make_symbol(pinned_db, "NVDA", timeframes=["1d", "1h"])
    make_bars(pinned_db, "NVDA", daily_times(date(2024, 1, 1), 2), timeframe="1h")

    response = get(client, "/api/v1/bars?symbols=AAPL,NVDA&timeframe=1h", reader)

    assert response.status_code == 404
    assert response.json_body["error"]["details"] == {
        "symbol": "AAPL",
        "timeframe": "1h",
        "tracked_timeframes": ["1d"],
    }


def test_bars_empty_range_of_backfilled_symbols_is_an_empty_200(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    three_symbols(pinned_db)

    response = get(client, "/api/v1/bars?symbols=AAPL,MSFT&start=2023-01-01&end=2023-01-31", reader)

    assert response.status_code == 200
    assert response.json_body["count"] == 0
    assert response.json_body["bars"] == []


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (f"symbols={hundred_symbols(101)}", "at most 100"),
        ("symbols=AAPL,MSFT,msft", "more than once: msft"),
        ("symbols=AAPL,,MSFT", "no empty item"),
        ("timeframe=1d", "symbols"),
        ("symbols=AAPL&sort=sideways", "sort must be one of"),
        ("symbols=AAPL&start=2024-02-01&end=2024-01-01", "start must be on or before end"),
        ("symbols=AAPL&start=last-week", "start must be"),
        ("symbols=AAPL&limit=0", "limit"),
        (f"symbols=AAPL&limit={MAX_PAGE_LIMIT + 1}", "limit must be at most"),
        ("symbols=AAPL&cursor=garbage", "invalid cursor"),
        ("symbols=AAPL&symbol=MSFT", "symbol"),
    ],
)
def test_bars_bad_query_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], query: str, words: str
) -> None:
    three_symbols(pinned_db)

    response = get(client, f"/api/v1/bars?{query}", reader)

    assert response.status_code == 400
    assert words in response.json_body["error"]["message"]


# --- CSV ------------------------------------------------------------------------------------------

CSV = {"Accept": "text/csv"}


def csv_get(client: Any, path: str, reader: dict[str, str], **headers: str) -> Any:
    return client.http.get(path, headers={**reader, **headers})


def test_historical_as_csv_has_a_header_row_and_one_row_per_bar(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 3))

    response = csv_get(client, "/api/v1/historical/AAPL", reader, Accept="text/csv")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8; header=present"
    assert "Link" not in response.headers
    assert response.body.decode() == (
        "time,open,high,low,close,volume,vwap,trades,validated,flags\n"
        "2024-01-01T05:00:00Z,100,101,99,100.5,1000,100,10,true,\n"
        "2024-01-02T05:00:00Z,100.01,101.01,99.01,100.51,1001,100.01,11,true,\n"
        "2024-01-03T05:00:00Z,100.02,101.02,99.02,100.52,1002,100.02,12,true,\n"
    )


def test_csv_quotes_as_rfc_4180_says_and_joins_flags(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 1), validated=False)
    pinned_db.execute(
        "UPDATE bars SET flags = %s, vwap = NULL, trades = NULL",
        (["volume_spike", 'odd "quoted", flag'],),
    )

    body = csv_get(
        client, "/api/v1/historical/AAPL?format=csv&validated_only=false", reader
    ).body.decode()

    assert body.splitlines()[1] == (
        '2024-01-01T05:00:00Z,100,101,99,100.5,1000,,,false,"volume_spike;odd ""quoted"", flag"'
    )
    row = next(csv.reader(io.StringIO(body.splitlines()[1])))
    assert row[6:] == ["", "", "false", 'volume_spike;odd "quoted", flag']


@pytest.mark.parametrize(
    ("path", "rows"),
    [
        ("/api/v1/historical/AAPL?limit=2&end=2024-01-07", 7),
        ("/api/v1/historical/AAPL?limit=3&sort=desc&start=2024-01-03T05%3A00%3A00Z", 8),
        ("/api/v1/bars?symbols=AAPL,MSFT&limit=4", 20),
        ("/api/v1/bars?symbols=AAPL,MSFT&limit=3&sort=desc", 20),
    ],
)
def test_csv_pages_follow_the_link_header_to_the_same_rows_as_json(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], path: str, rows: int
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "MSFT")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))
    make_bars(pinned_db, "MSFT", daily_times(date(2024, 1, 1), 10), price=400.0)
    csv_rows: list[list[str]] = []
    json_rows: list[tuple[str, ...]] = []
    next_path: str | None = path
    while next_path:
        response = csv_get(client, next_path, reader, Accept="text/csv")
        assert response.status_code == 200
        lines = list(csv.reader(io.StringIO(response.body.decode())))
        assert lines[0][-10:] == [
            "time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "trades",
            "validated",
            "flags",
        ]
        csv_rows += lines[1:]
        link = response.headers.get("Link")
        next_path = None
        if link:
            reference = link.removeprefix("<").removesuffix('>; rel="next"')
            assert reference.startswith("?")
            next_path = urljoin(f"http://h{path}", reference).removeprefix("http://h")
    cursor = None
    while True:
        body = get(client, path + (f"&cursor={cursor}" if cursor else ""), reader).json_body
        json_rows += [
            tuple(str(bar[key]) for key in ("symbol", "time") if key in bar) for bar in body["bars"]
        ]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert len(csv_rows) == rows
    width = 11 if "/bars" in path else 10
    assert [tuple(row[: width - 9]) for row in csv_rows] == json_rows


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/json, text/csv;q=0.5", "application/json"),
        ("text/csv;q=0.9, application/json;q=0.2", "text/csv"),
        ("*/*", "application/json"),
        ("", "application/json"),
        ("application/xml, */*;q=0.1", "application/json"),
        ("text/csv;q=0, */*", "application/json"),
    ],
)
def test_accept_chooses_json_or_csv(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], accept: str, media: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    response = csv_get(client, "/api/v1/historical/AAPL", reader, Accept=accept)

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == media


@pytest.mark.parametrize("path", ["/api/v1/historical/AAPL", "/api/v1/bars?symbols=AAPL"])
@pytest.mark.parametrize("accept", ["application/xml", "text/html, image/*", "text/csv;q=0"])
def test_an_unsupported_accept_is_406_in_the_one_error_body(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], path: str, accept: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    response = csv_get(client, path, reader, Accept=accept)

    assert response.status_code == 406
    assert response.headers["Content-Type"] == "application/json"
    error = response.json_body["error"]
    assert error["code"] == "not_acceptable"
    assert error["details"]["available"] == ["application/json", "text/csv"]


def test_format_wins_over_accept(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2))

    as_csv = csv_get(client, "/api/v1/historical/AAPL?format=csv", reader, Accept="application/xml")
    as_json = csv_get(client, "/api/v1/historical/AAPL?format=json", reader, Accept="text/csv")

    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_json.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("query", ["format=xml", "format=CSV", "format="])
def test_an_unknown_format_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], query: str
) -> None:
    make_symbol(pinned_db, "AAPL")

    response = get(client, f"/api/v1/historical/AAPL?{query}", reader)

    assert response.status_code == 400
    assert "format must be one of" in response.json_body["error"]["message"]


def test_csv_of_a_symbol_not_yet_backfilled_is_the_json_404(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")

    response = csv_get(client, "/api/v1/bars?symbols=AAPL", reader, Accept="text/csv")

    assert response.status_code == 404
    assert response.json_body["error"]["details"]["backfill_status"] == "pending"


# --- adjusted and traded prices ------------------------------------------------------------------


def split_on_the_third(conn: db.Connection) -> None:
    """AAPL daily bars on 1-4 Jan 2024 (opens 100.00 to 100.03) and a 4-for-1 split on the 3rd."""
    make_symbol(conn, "AAPL")
    make_bars(conn, "AAPL", daily_times(date(2024, 1, 1), 4))
    conn.execute(
        "INSERT INTO splits (symbol, execution_date, split_from, split_to)"
        " VALUES ('AAPL', '2024-01-03', 1, 4)"
    )


def test_historical_is_split_adjusted_unless_traded_prices_are_asked_for(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    split_on_the_third(pinned_db)

    adjusted = get(client, "/api/v1/historical/AAPL", reader).json_body
    traded = get(client, "/api/v1/historical/AAPL?adjusted=false", reader).json_body

    assert (adjusted["adjusted"], traded["adjusted"]) == (True, False)
    assert [(b["open"], b["volume"], b["trades"]) for b in traded["bars"]] == [
        (100.0, 1000.0, 10),
        (100.01, 1001.0, 11),
        (100.02, 1002.0, 12),
        (100.03, 1003.0, 13),
    ]
    assert [(b["open"], b["volume"], b["trades"]) for b in adjusted["bars"]] == [
        (25.0, 4000.0, 10),
        (100.01 / 4, 4004.0, 11),
        (100.02, 1002.0, 12),
        (100.03, 1003.0, 13),
    ]


def test_bars_latest_and_csv_say_which_prices_they_serve(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    split_on_the_third(pinned_db)
    before = "start=2024-01-01&end=2024-01-01"

    many = get(client, f"/api/v1/bars?symbols=AAPL&adjusted=false&{before}", reader).json_body
    latest = get(client, "/api/v1/latest?symbols=AAPL&adjusted=false", reader).json_body
    adjusted_csv = get(client, f"/api/v1/historical/AAPL?format=csv&{before}", reader)
    traded_csv = get(
        client, f"/api/v1/bars?symbols=AAPL&format=csv&adjusted=false&{before}", reader
    )

    assert (many["adjusted"], many["bars"][0]["close"]) == (False, 100.5)
    assert (latest["adjusted"], latest["bars"][0]["close"]) == (False, 100.53)
    assert adjusted_csv.headers["Mdw-Adjusted"] == "true"
    assert adjusted_csv.body.decode().splitlines()[1].split(",")[4] == "25.125"
    assert traded_csv.headers["Mdw-Adjusted"] == "false"
    assert traded_csv.body.decode().splitlines()[1].split(",")[5] == "100.5"


def test_a_cursor_keeps_its_kind_of_prices(
    client: Any, pinned_db: db.Connection, reader: dict[str, str]
) -> None:
    split_on_the_third(pinned_db)
    first = get(client, "/api/v1/historical/AAPL?limit=2", reader).json_body

    response = get(
        client,
        f"/api/v1/historical/AAPL?limit=2&adjusted=false&cursor={first['next_cursor']}",
        reader,
    )

    assert response.status_code == 400
    assert "adjusted unchanged" in response.json_body["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/historical/AAPL?adjusted=false",
        "/api/v1/historical/AAPL?adjusted=false&format=csv",
        "/api/v1/bars?symbols=AAPL,MSFT&adjusted=false",
        "/api/v1/bars?symbols=AAPL,MSFT&adjusted=false&format=csv",
        "/api/v1/latest?symbols=AAPL,MSFT&adjusted=false",
    ],
)
def test_traded_prices_of_units_still_stored_adjusted_are_a_409_naming_them(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], path: str
) -> None:
    for symbol in ("AAPL", "MSFT"):
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, daily_times(date(2024, 1, 1), 2))
    pinned_db.execute(
        "INSERT INTO backfill_state (symbol, timeframe, status, stored_prices)"
        " VALUES ('AAPL', '1d', 'completed', 'split_adjusted')"
    )

    response = get(client, path, reader)

    assert response.status_code == 409
    error = json.loads(response.body)["error"]
    assert error["code"] == "conflict"
    assert error["details"] == {"timeframe": "1d", "symbols": ["AAPL"]}
    assert "traded (unadjusted) 1d prices of AAPL are not stored yet" in error["message"]
    assert get(client, path.replace("adjusted=false", "adjusted=true"), reader).status_code == 200


@pytest.mark.parametrize("value", ["maybe", "2", "", "yes please"])
def test_a_bad_adjusted_is_400(
    client: Any, pinned_db: db.Connection, reader: dict[str, str], value: str
) -> None:
    split_on_the_third(pinned_db)

    response = get(client, f"/api/v1/historical/AAPL?adjusted={quote(value)}", reader)

    assert response.status_code == 400
    assert "adjusted" in response.json_body["error"]["message"]
