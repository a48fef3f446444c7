"""Admin symbol endpoints over HTTP, with the provider check against the Polygon simulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib import db
from devtools.polygon_sim import PolygonSimulator
from tests.factories import daily_times, make_admin_key, make_bars, make_key, make_symbol

SIM_KEY = "sim-test-key"


@pytest.fixture
def admin(client: Any, pinned_db: db.Connection) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_admin_key(pinned_db).raw_key}"}


@pytest.fixture(scope="module")
def simulator() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=SIM_KEY) as sim:
        yield sim


@pytest.fixture
def provider(simulator: PolygonSimulator, set_env: Callable[..., None]) -> PolygonSimulator:
    """The simulator as the configured provider, with a clean fault list and request log."""
    simulator.clear_faults()
    simulator.clear_log()
    set_env(POLYGON_BASE_URL=simulator.url, POLYGON_API_KEY=SIM_KEY, POLYGON_MAX_RPM=None)
    return simulator


def post(client: Any, path: str, headers: dict[str, str], body: Any) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.http.post(path, headers={**headers, "Content-Type": "application/json"}, body=raw)


def put(client: Any, path: str, headers: dict[str, str], body: Any) -> Any:
    return client.http.put(
        path, headers={**headers, "Content-Type": "application/json"}, body=json.dumps(body)
    )


def symbol_count(conn: db.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM tracked_symbols").fetchone()
    assert row is not None
    return int(row[0])


# --- POST /api/v1/admin/symbols ----------------------------------------------------------------


def test_add_symbol_normalises_checks_the_provider_and_returns_201(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], provider: PolygonSimulator
) -> None:
    response = post(
        client,
        "/api/v1/admin/symbols",
        admin,
        {"symbol": "btc-usd", "asset_class": "crypto", "timeframes": ["1h", "1d", "1h"]},
    )

    assert response.status_code == 201
    body = response.json_body
    assert body["symbol"] == "BTC"
    assert body["asset_class"] == "crypto"
    assert body["timeframes"] == ["1h", "1d"]
    assert body["active"] is True
    assert body["backfill_status"] == "pending"
    assert [r.path for r in provider.requests] == ["/v3/reference/tickers/X:BTCUSD"]


def test_add_symbol_defaults_to_daily_bars(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], provider: PolygonSimulator
) -> None:
    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "brk.b", "asset_class": "stock"}
    )

    assert response.status_code == 201
    assert response.json_body["symbol"] == "BRK.B"
    assert response.json_body["timeframes"] == ["1d"]


def test_add_duplicate_is_409_without_asking_the_provider(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], provider: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "BTC", asset_class="crypto")

    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "X:BTCUSD", "asset_class": "crypto"}
    )

    assert response.status_code == 409
    assert response.json_body["error"]["code"] == "conflict"
    assert provider.requests == []
    assert symbol_count(pinned_db) == 1


def test_add_unknown_ticker_is_422(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], provider: PolygonSimulator
) -> None:
    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "ZZZZQ", "asset_class": "stock"}
    )

    assert response.status_code == 422
    assert response.json_body["error"]["code"] == "unprocessable"
    assert "ZZZZQ" in response.json_body["error"]["message"]
    assert symbol_count(pinned_db) == 0


@pytest.fixture
def local_market(set_env: Callable[..., None]) -> Iterator[PolygonSimulator]:
    """The simulator as `make run` starts it: any well-formed ticker but the unknown set."""
    with PolygonSimulator(api_key=SIM_KEY, accept_any_ticker=True) as sim:
        set_env(POLYGON_BASE_URL=sim.url, POLYGON_API_KEY=SIM_KEY, POLYGON_MAX_RPM=None)
        yield sim


@pytest.mark.parametrize(
    ("body", "symbol", "provider_ticker"),
    [
        ({"symbol": "IBM", "asset_class": "stock"}, "IBM", "IBM"),
        ({"symbol": "AVAX-USD", "asset_class": "crypto"}, "AVAX", "X:AVAXUSD"),
    ],
)
def test_any_ticker_can_be_added_locally(
    client: Any,
    pinned_db: db.Connection,
    admin: dict[str, str],
    local_market: PolygonSimulator,
    body: dict[str, str],
    symbol: str,
    provider_ticker: str,
) -> None:
    response = post(client, "/api/v1/admin/symbols", admin, body)

    assert response.status_code == 201
    assert response.json_body["symbol"] == symbol
    assert [r.path for r in local_market.requests] == [f"/v3/reference/tickers/{provider_ticker}"]


def test_the_local_market_still_refuses_its_unknown_tickers(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], local_market: PolygonSimulator
) -> None:
    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "NOSUCH", "asset_class": "stock"}
    )

    assert response.status_code == 422
    assert response.json_body["error"]["code"] == "unprocessable"
    assert "NOSUCH" in response.json_body["error"]["message"]
    assert symbol_count(pinned_db) == 0


@pytest.mark.parametrize("fault", ["unauthorized", "forbidden"])
def test_add_when_provider_refuses_the_key_is_503_without_the_key(
    client: Any,
    pinned_db: db.Connection,
    admin: dict[str, str],
    provider: PolygonSimulator,
    fault: Any,
) -> None:
    provider.inject_fault(fault, times=None)

    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "AAPL", "asset_class": "stock"}
    )

    assert response.status_code == 503
    assert response.json_body["error"]["code"] == "service_unavailable"
    assert "SYMBOL_CHECK_ON_ADD" in response.json_body["error"]["message"]
    assert SIM_KEY not in response.body.decode()
    assert symbol_count(pinned_db) == 0


def test_add_when_provider_is_unreachable_is_503(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], set_env: Callable[..., None]
) -> None:
    from tests.conftest import free_port

    set_env(
        POLYGON_BASE_URL=f"http://127.0.0.1:{free_port()}",
        POLYGON_API_KEY=SIM_KEY,
        POLYGON_TIMEOUT_SECONDS="0.5",
    )

    response = post(
        client, "/api/v1/admin/symbols", admin, {"symbol": "AAPL", "asset_class": "stock"}
    )

    assert response.status_code == 503
    assert response.json_body["error"]["code"] == "service_unavailable"
    assert "unreachable" in response.json_body["error"]["message"]
    assert symbol_count(pinned_db) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "", "asset_class": "stock"},
        {"symbol": "A" * 50, "asset_class": "stock"},
        {"symbol": "../x", "asset_class": "stock"},
        {"symbol": "AAPL;DROP TABLE bars", "asset_class": "stock"},
        {"symbol": "AAPL", "asset_class": "bond"},
        {"symbol": "AAPL", "asset_class": "stock", "timeframes": ["2m"]},
        {"symbol": "AAPL", "asset_class": "stock", "timeframes": []},
        {"symbol": "AAPL"},
        {"symbol": "AAPL", "asset_class": "stock", "colour": "blue"},
        {"symbol": "X:BTCUSD", "asset_class": "stock"},
        "not json",
    ],
)
def test_add_bad_input_is_400_and_writes_nothing(
    client: Any,
    pinned_db: db.Connection,
    admin: dict[str, str],
    provider: PolygonSimulator,
    body: Any,
) -> None:
    response = post(client, "/api/v1/admin/symbols", admin, body)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert symbol_count(pinned_db) == 0
    assert provider.requests == []


# --- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/symbols"),
        ("POST", "/api/v1/admin/symbols"),
        ("GET", "/api/v1/admin/symbols/AAPL"),
        ("PUT", "/api/v1/admin/symbols/AAPL"),
        ("DELETE", "/api/v1/admin/symbols/AAPL"),
        ("POST", "/api/v1/admin/symbols/AAPL/backfill"),
    ],
)
def test_read_key_on_admin_symbol_routes_is_403(
    client: Any, pinned_db: db.Connection, method: str, path: str
) -> None:
    make_symbol(pinned_db, "AAPL")
    reader = {"Authorization": f"Bearer {make_key(pinned_db).raw_key}"}

    response = client.http.request(
        method,
        path,
        headers={**reader, "Content-Type": "application/json"},
        body=b'{"active": false}',
    )

    assert response.status_code == 403
    row = pinned_db.execute("SELECT active FROM tracked_symbols WHERE symbol = 'AAPL'").fetchone()
    assert row == (True,)
    assert symbol_count(pinned_db) == 1


# --- GET /api/v1/admin/symbols -----------------------------------------------------------------


def test_list_filters_by_active_and_asset_class(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "SPY", asset_class="etf")
    make_symbol(pinned_db, "BTC", asset_class="crypto", active=False)

    def symbols(query: str) -> list[str]:
        response = client.http.get(f"/api/v1/admin/symbols{query}", headers=admin)
        assert response.status_code == 200
        return [s["symbol"] for s in response.json_body["symbols"]]

    assert symbols("") == ["AAPL", "BTC", "SPY"]
    assert symbols("?active=true") == ["AAPL", "SPY"]
    assert symbols("?active=false") == ["BTC"]
    assert symbols("?asset_class=etf") == ["SPY"]
    assert symbols("?active=true&asset_class=crypto") == []


@pytest.mark.parametrize("query", ["?asset_class=bond", "?active=perhaps", "?colour=blue"])
def test_list_bad_filter_is_400(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], query: str
) -> None:
    response = client.http.get(f"/api/v1/admin/symbols{query}", headers=admin)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"


# --- GET /api/v1/admin/symbols/{symbol} --------------------------------------------------------


def test_detail_has_stats_per_timeframe_with_gaps(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1h"])
    # Tue 2 .. Fri 12 January 2024: 9 sessions; the 4th and the 9th are missing.
    sessions = [d for d in daily_times(date(2024, 1, 2), 11) if d.weekday() < 5]
    stored = [d for d in sessions if d.day not in (4, 9)]
    make_bars(pinned_db, "AAPL", stored, validated=[True] * (len(stored) - 1) + [False])

    response = client.http.get("/api/v1/admin/symbols/aapl", headers=admin)

    assert response.status_code == 200
    body = response.json_body
    assert body["symbol"] == "AAPL"
    assert body["stats"] == {
        "1h": {
            "record_count": 0,
            "date_range": {"first": None, "last": None},
            "validation_rate": None,
            "gaps_detected": None,
            "missing_sessions": None,
        },
        "1d": {
            "record_count": 7,
            "date_range": {"first": "2024-01-02T05:00:00Z", "last": "2024-01-12T05:00:00Z"},
            "validation_rate": round(6 / 7, 6),
            "gaps_detected": 2,
            "missing_sessions": ["2024-01-04", "2024-01-09"],
        },
    }


def test_detail_of_crypto_counts_weekend_gaps(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "ETH", asset_class="crypto")
    weekdays = [d for d in daily_times(date(2024, 1, 1), 14, hour=0) if d.weekday() < 5]
    make_bars(pinned_db, "ETH", weekdays)

    response = client.http.get("/api/v1/admin/symbols/ETH-USD", headers=admin)

    assert response.status_code == 200
    assert response.json_body["stats"]["1d"]["gaps_detected"] == 2


def test_detail_of_unknown_symbol_is_404(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    response = client.http.get("/api/v1/admin/symbols/NOPE", headers=admin)

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


def test_detail_of_malformed_symbol_is_400(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    response = client.http.get("/api/v1/admin/symbols/AAPL%3BDROP", headers=admin)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"


# --- PUT and DELETE ----------------------------------------------------------------------------


def test_delete_deactivates_and_keeps_bars_then_put_reactivates(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 2), 3))

    deleted = client.http.delete("/api/v1/admin/symbols/AAPL", headers=admin)
    kept = pinned_db.execute("SELECT count(*) FROM bars WHERE symbol = 'AAPL'").fetchone()
    restored = put(
        client, "/api/v1/admin/symbols/AAPL", admin, {"active": True, "timeframes": ["1w", "1d"]}
    )

    assert deleted.status_code == 200
    assert deleted.json_body["active"] is False
    assert kept == (3,)
    assert restored.status_code == 200
    assert restored.json_body["active"] is True
    assert restored.json_body["timeframes"] == ["1d", "1w"]
    assert restored.json_body["asset_class"] == "stock"


def test_put_changes_asset_class(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "SPY")

    response = put(client, "/api/v1/admin/symbols/SPY", admin, {"asset_class": "etf"})

    assert response.status_code == 200
    assert response.json_body["asset_class"] == "etf"
    assert response.json_body["timeframes"] == ["1d"]


@pytest.mark.parametrize(
    "body",
    [
        {"timeframes": ["2m"]},
        {"timeframes": []},
        {"asset_class": "bond"},
        {"active": "yes"},
        {"symbol": "MSFT"},
    ],
)
def test_put_bad_input_is_400_and_changes_nothing(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], body: dict[str, Any]
) -> None:
    before = make_symbol(pinned_db, "AAPL")

    response = put(client, "/api/v1/admin/symbols/AAPL", admin, body)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    row = pinned_db.execute(
        "SELECT asset_class, timeframes, active, updated_at FROM tracked_symbols"
    ).fetchone()
    assert row == ("stock", ["1d"], True, before.updated_at)


def test_put_may_reclassify_a_plain_symbol(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    make_symbol(pinned_db, "BTC", asset_class="crypto")

    response = put(client, "/api/v1/admin/symbols/X:BTCUSD", admin, {"asset_class": "stock"})

    # BTC itself is a plain symbol, so the class may change; the pair spelling may not.
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_put_and_delete_of_unknown_symbol_are_404(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], method: str
) -> None:
    response = client.http.request(
        method,
        "/api/v1/admin/symbols/NOPE",
        headers={**admin, "Content-Type": "application/json"},
        body=b'{"active": true}',
    )

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"
    assert symbol_count(pinned_db) == 0


# --- POST /api/v1/admin/symbols/{symbol}/backfill -----------------------------------------------


def test_backfill_now_runs_each_timeframe_and_reports_it(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], provider: PolygonSimulator
) -> None:
    make_symbol(pinned_db, "ETH", asset_class="crypto", timeframes=["1d", "1w"])

    response = client.http.post("/api/v1/admin/symbols/eth-usd/backfill", headers=admin)

    assert response.status_code == 200
    body = response.json_body
    assert body["symbol"] == "ETH"
    assert [(r["timeframe"], r["status"]) for r in body["results"]] == [
        ("1d", "completed"),
        ("1w", "completed"),
    ]
    stored = pinned_db.execute(
        "SELECT timeframe, count(*) FROM bars WHERE symbol = 'ETH' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert stored == [(r["timeframe"], r["bars_written"]) for r in body["results"]]
    assert all(count > 0 for _, count in stored)


def test_backfill_now_of_unknown_symbol_is_404(
    client: Any, pinned_db: db.Connection, admin: dict[str, str]
) -> None:
    response = client.http.post("/api/v1/admin/symbols/NOPE/backfill", headers=admin)

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


def test_backfill_now_on_aws_queues_one_message_per_timeframe(
    client: Any, pinned_db: db.Connection, admin: dict[str, str], aws: None, set_env: Any
) -> None:
    import boto3

    from chalicelib.ops.models import decode_message

    url = boto3.client("sqs").create_queue(QueueName="mdw-backfill")["QueueUrl"]
    make_symbol(pinned_db, "ETH", asset_class="crypto", timeframes=["1d", "1w"])
    set_env(AWS_LAMBDA_FUNCTION_NAME="mdw-dev-api_handler")

    before = datetime.now(UTC).date().isoformat()
    response = client.http.post("/api/v1/admin/symbols/eth-usd/backfill", headers=admin)
    after = datetime.now(UTC).date().isoformat()

    # The window is the request's UTC date; a request that straddles midnight may take either.
    today = response.json_body["queued"][0]["window"]
    assert today in {before, after}
    assert response.status_code == 202
    assert response.json_body == {
        "symbol": "ETH",
        "results": [],
        "queued": [
            {"timeframe": "1d", "window": today},
            {"timeframe": "1w", "window": today},
        ],
    }
    received = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    messages = sorted(
        (decode_message(m["Body"]) for m in received["Messages"]), key=lambda m: m.timeframe
    )
    assert [(m.symbol, m.timeframe, m.window.isoformat()) for m in messages] == [
        ("ETH", "1d", today),
        ("ETH", "1w", today),
    ]
    assert pinned_db.execute("SELECT count(*) FROM bars WHERE symbol = 'ETH'").fetchone() == (0,)
