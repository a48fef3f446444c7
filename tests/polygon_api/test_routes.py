"""The Polygon-compatible routes over HTTP (chalice's test client): shapes, resampling on
known bars, paging, and every refusal in Polygon's error shape."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from chalicelib import db
from chalicelib.backfill import repository as backfill_repository
from tests.factories import daily_times, make_bars, make_key, make_symbol

NY_MIDNIGHT_2024_01_02 = 1704171600000  # 2024-01-02 00:00 New York (05:00 UTC), in ms


@pytest.fixture
def reader(client: Any, pinned_db: db.Connection) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(pinned_db).raw_key}"}


def get(client: Any, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = client.http.get(path, headers=headers)
    return response.status_code, json.loads(response.body)


def insert_minutes(
    conn: db.Connection, symbol: str, bars: list[tuple[datetime, float, float, float, float]]
) -> None:
    """Minute bars (time, open, high, low, close) with volume 10·(i+1), vwap = close, trades 1."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap,"
            " trades, validated) VALUES (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1, true)",
            [
                (symbol, at, o, h, low, c, 10.0 * (i + 1), c)
                for i, (at, o, h, low, c) in enumerate(bars)
            ],
        )


# --- shapes -------------------------------------------------------------------------------------


def test_daily_bars_are_read_as_stored_in_polygons_shape(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 2), 3))

    status, body = get(client, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-03", reader)

    assert status == 200
    assert set(body) == {
        "ticker",
        "adjusted",
        "queryCount",
        "resultsCount",
        "status",
        "request_id",
        "results",
    }
    assert body["ticker"] == "AAPL"
    assert body["adjusted"] is True
    assert body["status"] == "OK"
    assert body["resultsCount"] == body["queryCount"] == 2
    assert body["request_id"]
    first = body["results"][0]
    assert set(first) == {"o", "h", "l", "c", "v", "vw", "n", "t"}
    assert first["t"] == NY_MIDNIGHT_2024_01_02
    assert first["o"] == 100.0


def test_an_untracked_ticker_answers_like_polygon_with_no_results(client, reader):
    status, body = get(client, "/v2/aggs/ticker/ZZZZ/range/1/day/2024-01-02/2024-01-03", reader)

    assert status == 200
    assert body["resultsCount"] == 0
    assert body["queryCount"] == 0
    assert body["status"] == "OK"
    assert "results" not in body


def test_resampled_minutes_take_first_max_min_last_and_sums(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL", timeframes=["1m"])
    start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 New York
    insert_minutes(
        pinned_db,
        "AAPL",
        [
            (start, 10, 11, 9, 10.5),
            (start + timedelta(minutes=1), 10.5, 12, 10, 11),
            (start + timedelta(minutes=2), 11, 11.5, 8, 9),
            (start + timedelta(minutes=3), 9, 10, 8.5, 9.5),  # next 3-minute bucket
        ],
    )

    status, body = get(client, "/v2/aggs/ticker/AAPL/range/3/minute/2024-01-02/2024-01-02", reader)

    assert status == 200
    first, second = body["results"]
    assert first["t"] == int(start.timestamp() * 1000)
    assert (first["o"], first["h"], first["l"], first["c"]) == (10, 12, 8, 9)
    assert first["v"] == 60  # 10 + 20 + 30
    assert first["vw"] == pytest.approx((10.5 * 10 + 11 * 20 + 9 * 30) / 60)
    assert first["n"] == 3
    assert second["t"] == int((start + timedelta(minutes=3)).timestamp() * 1000)
    assert body["queryCount"] == 4


def test_hours_are_anchored_on_new_york_clock_hours(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL", timeframes=["1m"])
    at = datetime(2024, 1, 2, 14, 45, tzinfo=UTC)  # 09:45 New York
    insert_minutes(pinned_db, "AAPL", [(at, 1, 1, 1, 1)])

    _, body = get(client, "/v2/aggs/ticker/AAPL/range/1/hour/2024-01-02/2024-01-02", reader)

    assert body["results"][0]["t"] == int(datetime(2024, 1, 2, 14, tzinfo=UTC).timestamp() * 1000)


def test_weeks_start_on_sunday_new_york_and_months_on_the_first(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 2), 40))  # Tue 2 Jan .. 10 Feb

    _, weeks = get(client, "/v2/aggs/ticker/AAPL/range/1/week/2024-01-01/2024-02-29", reader)
    _, months = get(client, "/v2/aggs/ticker/AAPL/range/1/month/2024-01-01/2024-02-29", reader)

    sunday = datetime(2023, 12, 31, 5, tzinfo=UTC)  # 00:00 New York
    assert weeks["results"][0]["t"] == int(sunday.timestamp() * 1000)
    assert weeks["results"][1]["t"] == int((sunday + timedelta(days=7)).timestamp() * 1000)
    assert weeks["results"][0]["o"] == 100.0  # Tuesday's open: the first bar of that week
    assert [m["t"] for m in months["results"]] == [
        int(datetime(2024, 1, 1, 5, tzinfo=UTC).timestamp() * 1000),
        int(datetime(2024, 2, 1, 5, tzinfo=UTC).timestamp() * 1000),
    ]
    assert sum(m["v"] for m in months["results"]) == pytest.approx(
        sum(w["v"] for w in weeks["results"])
    )


def test_crypto_days_are_utc_and_the_ticker_is_polygons(client, pinned_db, reader):
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    make_bars(pinned_db, "BTC", daily_times(date(2024, 1, 6), 2, hour=0))  # Sat, Sun

    _, body = get(client, "/v2/aggs/ticker/X:BTCUSD/range/1/week/2024-01-06/2024-01-07", reader)

    assert body["ticker"] == "X:BTCUSD"
    saturday_week, sunday_week = body["results"]
    assert saturday_week["t"] == int(datetime(2023, 12, 31, tzinfo=UTC).timestamp() * 1000)
    assert sunday_week["t"] == int(datetime(2024, 1, 7, tzinfo=UTC).timestamp() * 1000)


# --- paging -------------------------------------------------------------------------------------


def test_next_url_pages_through_asc_and_desc_without_overlap(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 10))

    for sort in ("asc", "desc"):
        path = f"/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-10?limit=4&sort={sort}"
        seen: list[int] = []
        while path:
            status, body = get(client, path, reader)
            assert status == 200
            seen.extend(bar["t"] for bar in body["results"])
            next_url = body.get("next_url")
            path = ""
            if next_url:
                parts = urlsplit(next_url)
                assert parts.path.startswith("/v2/aggs/ticker/AAPL/range/1/day/")
                path = f"{parts.path}?{parts.query}"
        assert len(seen) == 10
        assert seen == sorted(seen, reverse=sort == "desc")


def test_a_cursor_of_another_range_is_refused(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 5))
    _, body = get(client, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?limit=2", reader)
    cursor = urlsplit(body["next_url"]).query

    status, body = get(
        client, f"/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05?{cursor}", reader
    )

    assert status == 400
    assert body["status"] == "ERROR"


# --- bad input, in Polygon's error shape --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v2/aggs/ticker/AAPL/range/0/day/2024-01-01/2024-01-05", "multiplier must be between"),
        (
            "/v2/aggs/ticker/AAPL/range/10000/day/2024-01-01/2024-01-05",
            "multiplier must be between",
        ),
        ("/v2/aggs/ticker/AAPL/range/1441/minute/2024-01-01/2024-01-05", "between 1 and 1440"),
        ("/v2/aggs/ticker/AAPL/range/x/day/2024-01-01/2024-01-05", "multiplier must be a positive"),
        ("/v2/aggs/ticker/AAPL/range/1/fortnight/2024-01-01/2024-01-05", "timespan must be one of"),
        ("/v2/aggs/ticker/AAPL/range/1/second/2024-01-01/2024-01-05", "finer than a minute"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-05/2024-01-01", "must not be after"),
        ("/v2/aggs/ticker/AAPL/range/1/day/yesterday/2024-01-01", "from must be a date"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-02-30/2024-03-01", "from must be a date"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?limit=50001", "limit"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?limit=0", "limit"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?sort=up", "sort must be one of"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?adjusted=maybe", "adjusted"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?cursor=abc", "invalid cursor"),
        ("/v2/aggs/grouped/locale/us/market/stocks/2024-13-01", "date must be a date"),
        ("/v3/reference/splits?limit=1001", "limit"),
        ("/v3/reference/splits?execution_date.gte=soon", "execution_date.gte"),
    ],
)
def test_bad_input_is_a_400_in_polygons_error_shape(client, pinned_db, reader, path, words):
    make_symbol(pinned_db, "AAPL")

    status, body = get(client, path, reader)

    assert status == 400
    assert set(body) == {"status", "request_id", "error"}
    assert body["status"] == "ERROR"
    assert words in body["error"]


def split_adjusted_unit(conn: db.Connection, symbol: str, timeframe: str = "1d") -> None:
    """Mark a unit as holding the split-adjusted bars stored before traded prices were kept."""
    conn.execute(
        "INSERT INTO backfill_state (symbol, timeframe, status, stored_prices)"
        " VALUES (%s, %s, 'completed', 'split_adjusted')",
        (symbol, timeframe),
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-05?adjusted=false",
        "/v2/aggs/ticker/AAPL/range/1/week/2024-01-01/2024-01-05?adjusted=false",
        "/v2/aggs/grouped/locale/us/market/stocks/2024-01-02?adjusted=false",
    ],
)
def test_traded_prices_of_a_unit_still_stored_adjusted_are_a_409(client, pinned_db, reader, path):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 5))
    split_adjusted_unit(pinned_db, "AAPL")

    status, body = get(client, path, reader)

    assert status == 409
    assert set(body) == {"status", "request_id", "error"}
    assert "traded (unadjusted) 1d prices of AAPL are not stored yet" in body["error"]
    assert get(client, path.replace("adjusted=false", "adjusted=true"), reader)[0] == 200


def test_a_split_divides_earlier_prices_unless_traded_ones_are_asked_for(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 4))
    backfill_repository.upsert_split(
        pinned_db, symbol="AAPL", execution_date=date(2024, 1, 3), split_from=1, split_to=4
    )
    path = "/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-01-04"

    _, adjusted = get(client, path, reader)
    _, traded = get(client, path + "?adjusted=false", reader)
    _, weekly = get(client, "/v2/aggs/ticker/AAPL/range/1/week/2024-01-01/2024-01-04", reader)

    assert (adjusted["adjusted"], traded["adjusted"]) == (True, False)
    # make_bars: opens 100.00, 100.01, ...; volumes 1000, 1001, ...
    assert [(r["o"], r["v"]) for r in traded["results"]] == [
        (100.0, 1000.0),
        (100.01, 1001.0),
        (100.02, 1002.0),
        (100.03, 1003.0),
    ]
    assert [(r["o"], r["v"]) for r in adjusted["results"]] == [
        (25.0, 4000.0),
        (100.01 / 4, 4004.0),
        (100.02, 1002.0),
        (100.03, 1003.0),
    ]
    # A week across the split is built from adjusted bars: the max of adjusted highs.
    (week,) = weekly["results"]
    assert (week["o"], week["h"], week["v"]) == (25.0, 101.03, 4000.0 + 4004.0 + 1002 + 1003)


def test_an_untracked_base_timeframe_is_a_404_naming_the_tracked_ones(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL", timeframes=["1d"])

    status, body = get(client, "/v2/aggs/ticker/AAPL/range/1/hour/2024-01-01/2024-01-05", reader)

    assert status == 404
    assert body["status"] == "ERROR"
    assert "not tracked at 1m" in body["error"]
    assert "1d" in body["error"]


def test_a_refusal_of_the_key_layer_is_restated_in_polygons_shape(client, pinned_db):
    limited = {"Authorization": f"Bearer {make_key(pinned_db, rate_limit_per_minute=1).raw_key}"}
    path = "/v2/aggs/ticker/ZZZZ/range/1/day/2024-01-01/2024-01-05"

    assert get(client, path, limited)[0] == 200
    response = client.http.get(path, headers=limited)

    assert response.status_code == 429
    assert "Retry-After" in response.headers
    body = json.loads(response.body)
    assert body["status"] == "ERROR"
    assert body["error"] == "this API key is limited to 1 requests per minute"


def test_a_method_the_route_lacks_is_a_405_in_polygons_shape(client, reader):
    response = client.http.post("/v3/reference/splits", headers=reader, body=b"{}")

    assert response.status_code == 405
    assert json.loads(response.body)["status"] == "ERROR"


def test_the_native_api_keeps_its_own_error_body(client, reader):
    status, body = get(client, "/api/v1/historical/AAPL?timeframe=2d", reader)

    assert status == 400
    assert set(body) == {"error"}


# --- grouped daily and splits -------------------------------------------------------------------


def test_grouped_daily_has_every_tracked_symbol_of_its_market_on_that_date(
    client, pinned_db, reader
):
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "MSFT")
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    for symbol in ("AAPL", "MSFT"):
        make_bars(pinned_db, symbol, daily_times(date(2024, 1, 2), 2))
    make_bars(pinned_db, "BTC", daily_times(date(2024, 1, 2), 2, hour=0))

    _, stocks = get(client, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-03", reader)
    _, crypto = get(client, "/v2/aggs/grouped/locale/global/market/crypto/2024-01-03", reader)
    _, none = get(client, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-06", reader)

    assert [bar["T"] for bar in stocks["results"]] == ["AAPL", "MSFT"]
    assert {bar["t"] for bar in stocks["results"]} == {NY_MIDNIGHT_2024_01_02 + 86_400_000}
    assert [bar["T"] for bar in crypto["results"]] == ["X:BTCUSD"]
    assert crypto["results"][0]["t"] == int(datetime(2024, 1, 3, tzinfo=UTC).timestamp() * 1000)
    assert none["resultsCount"] == 0
    assert "results" not in none


def test_splits_are_filtered_ordered_and_paged(client, pinned_db, reader):
    for symbol, day, split_from, split_to in [
        ("AAPL", date(2020, 8, 31), 1, 4),
        ("TSLA", date(2020, 8, 31), 1, 5),
        ("AAPL", date(2014, 6, 9), 1, 7),
        ("GE", date(2021, 8, 2), 8, 1),
    ]:
        backfill_repository.upsert_split(
            pinned_db, symbol=symbol, execution_date=day, split_from=split_from, split_to=split_to
        )

    _, aapl = get(client, "/v3/reference/splits?ticker=AAPL&order=desc", reader)
    _, reverse = get(client, "/v3/reference/splits?reverse_split=true", reader)
    _, since = get(client, "/v3/reference/splits?execution_date.gte=2020-01-01&limit=2", reader)

    assert [(s["ticker"], s["execution_date"]) for s in aapl["results"]] == [
        ("AAPL", "2020-08-31"),
        ("AAPL", "2014-06-09"),
    ]
    assert set(aapl["results"][0]) == {"id", "ticker", "execution_date", "split_from", "split_to"}
    assert [s["ticker"] for s in reverse["results"]] == ["GE"]
    assert [s["ticker"] for s in since["results"]] == ["AAPL", "TSLA"]
    parts = urlsplit(since["next_url"])
    _, rest = get(client, f"{parts.path}?{parts.query}", reader)
    assert [s["ticker"] for s in rest["results"]] == ["GE"]
    assert "next_url" not in rest


# --- the API document ---------------------------------------------------------------------------


def test_the_api_document_lists_the_routes_their_parameters_and_polygons_error_body(client):
    document = json.loads(client.http.get("/openapi.json").body)

    aggs = document["paths"]["/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}"]
    operation = aggs["get"]
    names = [parameter["name"] for parameter in operation["parameters"]]
    assert names == [
        "ticker",
        "multiplier",
        "timespan",
        "from",
        "to",
        "adjusted",
        "sort",
        "limit",
        "cursor",
    ]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "429", "503"}
    polygon_error = {"$ref": "#/components/schemas/PolygonError"}
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == polygon_error
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 50_000
    assert document["components"]["schemas"]["AggsResponse"]["required"] == [
        "ticker",
        "adjusted",
        "queryCount",
        "resultsCount",
        "status",
        "request_id",
    ]
    for path in (
        "/v2/aggs/grouped/locale/us/market/stocks/{date}",
        "/v2/aggs/grouped/locale/global/market/crypto/{date}",
        "/v3/reference/splits",
    ):
        assert document["paths"][path]["get"]["x-scope"] == "read"


def test_bars_that_failed_validation_are_left_out_of_every_bucket(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 2), 3), validated=[True, False, True])

    _, days = get(client, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-04", reader)
    _, week = get(client, "/v2/aggs/ticker/AAPL/range/1/week/2024-01-02/2024-01-04", reader)

    assert [bar["o"] for bar in days["results"]] == [100.0, 100.02]
    assert week["results"][0]["c"] == days["results"][-1]["c"]
    assert week["queryCount"] == 2


def test_grouped_daily_leaves_out_inactive_symbols(client, pinned_db, reader):
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "IBM", active=False)
    for symbol in ("AAPL", "IBM"):
        make_bars(pinned_db, symbol, daily_times(date(2024, 1, 2), 1))

    _, body = get(client, "/v2/aggs/grouped/locale/us/market/stocks/2024-01-02", reader)

    assert [bar["T"] for bar in body["results"]] == ["AAPL"]
