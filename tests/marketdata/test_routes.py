"""GET /api/v1/symbols, /api/v1/historical/{symbol} and /api/v1/status over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

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
