"""The simulator answers as Polygon's OpenAPI spec says, deterministically, over real HTTP."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time as clock
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import requests
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib.backfill.validation import Thresholds, flag_names, validate_bars
from chalicelib.market.calendar import session_bounds_utc, trading_days
from devtools.polygon_sim import DEFAULT_CRYPTO, DEFAULT_STOCKS, UNKNOWN_TICKERS, PolygonSimulator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Polygon's own OpenAPI document (an extract of the endpoints the warehouse uses).
SPEC_PATH = PROJECT_ROOT / "tests" / "data" / "polygon-openapi-subset.json"
SPEC_URI = "urn:polygon-openapi-subset"
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2025, 6, 30, 22, 0, tzinfo=UTC)

STOCK_AGGS = "/v2/aggs/ticker/{stocksTicker}/range/{multiplier}/{timespan}/{from}/{to}"
CRYPTO_AGGS = "/v2/aggs/ticker/{cryptoTicker}/range/{multiplier}/{timespan}/{from}/{to}"
GROUPED_STOCKS = "/v2/aggs/grouped/locale/us/market/stocks/{date}"
GROUPED_CRYPTO = "/v2/aggs/grouped/locale/global/market/crypto/{date}"
SPLITS = "/v3/reference/splits"
TICKER_DETAILS = "/v3/reference/tickers/{ticker}"


# ----------------------------------------------------------------------------------------------
# Spec validation


@cache
def _registry() -> Registry[Any]:
    if not SPEC_PATH.is_file():
        pytest.fail(f"Polygon's OpenAPI spec is not at {SPEC_PATH}")
    spec = json.loads(SPEC_PATH.read_text())
    # The whole document is one resource, so any "$ref": "#/..." inside a response schema
    # resolves against it.
    return Registry().with_resource(SPEC_URI, Resource(contents=spec, specification=DRAFT202012))


def assert_matches_spec(spec_path: str, body: Any) -> None:
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("paths", spec_path, "get", "responses", "200", "content", "application/json")
    )
    schema = {"$ref": f"{SPEC_URI}#/{pointer}/schema"}
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(body)


def test_the_spec_check_rejects_a_wrong_body() -> None:
    # Without this, a mis-wired validator would let every test below pass.
    bar_without_time = {"o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0}
    body = {
        "ticker": "AAPL",
        "status": "OK",
        "adjusted": True,
        "queryCount": 1,
        "resultsCount": 1,
        "request_id": "x",
        "results": [bar_without_time],
    }
    with pytest.raises(jsonschema.ValidationError, match="'t' is a required property"):
        assert_matches_spec(STOCK_AGGS, body)
    with pytest.raises(jsonschema.ValidationError, match="'request_id' is a required property"):
        assert_matches_spec(
            GROUPED_STOCKS, {"status": "OK", "adjusted": True, "queryCount": 0, "resultsCount": 0}
        )


# ----------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def sim() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(now=NOW) as simulator:
        yield simulator


def get(sim: PolygonSimulator, path: str, **params: str) -> requests.Response:
    return requests.get(sim.url + path, params=params or None, timeout=5)


def ny_midnight_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=NEW_YORK).timestamp() * 1000)


def utc_midnight_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp() * 1000)


def aggs(sim: PolygonSimulator, ticker: str, span: str, start: str, end: str, **params: str) -> Any:
    response = get(sim, f"/v2/aggs/ticker/{ticker}/range/{span}/{start}/{end}", **params)
    assert response.status_code == 200
    return response.json()


def assert_sane_bars(bars: list[dict[str, Any]], *, fractional_volume: bool) -> None:
    for bar in bars:
        assert 0 < bar["l"] <= min(bar["o"], bar["c"]), bar
        assert max(bar["o"], bar["c"]) <= bar["h"], bar
        assert bar["l"] <= bar["vw"] <= bar["h"], bar
        assert bar["v"] > 0, bar
        assert bar["n"] >= 1, bar
    if not fractional_volume:
        assert all(float(bar["v"]).is_integer() for bar in bars)
    else:
        assert any(not float(bar["v"]).is_integer() for bar in bars)


# ----------------------------------------------------------------------------------------------
# Aggregates


def test_stock_daily_bars_match_the_spec_and_fall_on_nyse_sessions(
    sim: PolygonSimulator,
) -> None:
    body = aggs(sim, "AAPL", "1/day", "2024-03-25", "2024-04-05")

    assert_matches_spec(STOCK_AGGS, body)
    assert set(body) == {
        "ticker",
        "queryCount",
        "resultsCount",
        "adjusted",
        "results",
        "status",
        "request_id",
    }
    sessions = trading_days(date(2024, 3, 25), date(2024, 4, 5))
    assert date(2024, 3, 29) not in sessions  # Good Friday
    assert [bar["t"] for bar in body["results"]] == [ny_midnight_ms(day) for day in sessions]
    assert body["ticker"] == "AAPL"
    assert body["status"] == "OK"
    assert body["adjusted"] is True
    assert body["resultsCount"] == body["queryCount"] == len(sessions) == 9
    assert set(body["results"][0]) == {"o", "h", "l", "c", "v", "vw", "n", "t"}


def test_stock_daily_bars_are_stamped_at_new_york_midnight_in_both_seasons(
    sim: PolygonSimulator,
) -> None:
    winter = aggs(sim, "MSFT", "1/day", "2024-01-02", "2024-01-02")["results"]
    summer = aggs(sim, "MSFT", "1/day", "2024-07-01", "2024-07-01")["results"]
    assert [bar["t"] for bar in winter] == [1704171600000]  # 2024-01-02T05:00:00Z
    assert [bar["t"] for bar in summer] == [1719806400000]  # 2024-07-01T04:00:00Z


def test_no_stock_bars_on_holidays_and_weekends(sim: PolygonSimulator) -> None:
    body = aggs(sim, "SPY", "1/day", "2024-07-04", "2024-07-07")
    assert [bar["t"] for bar in body["results"]] == [ny_midnight_ms(date(2024, 7, 5))]
    thanksgiving = aggs(sim, "SPY", "1/day", "2024-11-28", "2024-11-28")
    assert thanksgiving["resultsCount"] == 0
    assert "results" not in thanksgiving


def test_crypto_daily_bars_cover_weekends_at_utc_midnight(sim: PolygonSimulator) -> None:
    body = aggs(sim, "X:BTCUSD", "1/day", "2024-07-04", "2024-07-10")

    assert_matches_spec(CRYPTO_AGGS, body)
    assert body["ticker"] == "X:BTCUSD"
    days = [date(2024, 7, 4) + timedelta(days=offset) for offset in range(7)]
    assert [bar["t"] for bar in body["results"]] == [utc_midnight_ms(day) for day in days]
    assert_sane_bars(body["results"], fractional_volume=True)


def test_stock_intraday_bars_stay_inside_the_session(sim: PolygonSimulator) -> None:
    opens, closes = session_bounds_utc(date(2024, 7, 1))
    open_ms, close_ms = int(opens.timestamp() * 1000), int(closes.timestamp() * 1000)

    minutes = aggs(sim, "AAPL", "1/minute", "2024-07-01", "2024-07-01")["results"]
    five = aggs(sim, "AAPL", "5/minute", "2024-07-01", "2024-07-01")["results"]
    hours = aggs(sim, "AAPL", "1/hour", "2024-07-01", "2024-07-01")["results"]

    assert len(minutes) == 390
    assert minutes[0]["t"] == open_ms == 1719840600000  # 09:30 New York
    assert minutes[-1]["t"] == close_ms - 60_000
    assert [bar["t"] for bar in five] == list(range(open_ms, close_ms, 300_000))
    assert len(five) == 78
    # Hour bars start at the top of the hour, as Polygon's do: 09:00 (holding 09:30-09:59),
    # 10:00, ... 15:00.
    assert [bar["t"] for bar in hours] == list(range(open_ms - 1_800_000, close_ms, 3_600_000))
    assert len(hours) == 7
    first_half_hour = minutes[:30]
    assert (hours[0]["o"], hours[0]["c"]) == (first_half_hour[0]["o"], first_half_hour[-1]["c"])
    assert hours[0]["h"] == max(bar["h"] for bar in first_half_hour)
    assert_sane_bars(minutes, fractional_volume=False)


def test_stock_intraday_bars_stop_at_an_early_close(sim: PolygonSimulator) -> None:
    # 29 Nov 2024, the day after Thanksgiving, closes at 13:00 New York (18:00 UTC).
    minutes = aggs(sim, "AAPL", "1/minute", "2024-11-29", "2024-11-29")["results"]
    hours = aggs(sim, "AAPL", "1/hour", "2024-11-29", "2024-11-29")["results"]
    full_day = aggs(sim, "AAPL", "1/minute", "2024-11-27", "2024-11-27")["results"]

    assert len(minutes) == 210
    assert minutes[0]["t"] == 1732890600000  # 09:30 New York
    assert minutes[-1]["t"] == 1732903140000  # 12:59 New York
    assert [bar["t"] for bar in minutes] == list(range(1732890600000, 1732903200000, 60_000))
    # 09:00 (holding 09:30-09:59), 10:00, 11:00 and 12:00.
    assert [bar["t"] for bar in hours] == list(range(1732888800000, 1732903200000, 3_600_000))
    assert len(full_day) == 390
    assert_sane_bars(minutes, fractional_volume=False)


@pytest.mark.parametrize("day", ["2024-07-01", "2024-11-29"])  # a full session, an early close
def test_intraday_bars_agree_with_the_daily_bar(sim: PolygonSimulator, day: str) -> None:
    daily = aggs(sim, "NVDA", "1/day", day, day)["results"][0]
    minutes = aggs(sim, "NVDA", "1/minute", day, day)["results"]
    assert minutes[0]["o"] == daily["o"]
    assert minutes[-1]["c"] == daily["c"]
    assert max(bar["h"] for bar in minutes) <= daily["h"]
    assert min(bar["l"] for bar in minutes) >= daily["l"]


def test_crypto_hour_bars_run_around_the_clock(sim: PolygonSimulator) -> None:
    hours = aggs(sim, "X:ETHUSD", "1/hour", "2024-07-06", "2024-07-06")["results"]  # a Saturday
    start = utc_midnight_ms(date(2024, 7, 6))
    assert [bar["t"] for bar in hours] == [start + hour * 3_600_000 for hour in range(24)]


def test_weekly_bars_merge_the_sessions_of_each_week(sim: PolygonSimulator) -> None:
    daily = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-12")["results"]
    weekly = aggs(sim, "AAPL", "1/week", "2024-07-01", "2024-07-12")["results"]

    # Polygon's weeks start on Sunday, midnight New York.
    assert [bar["t"] for bar in weekly] == [
        ny_midnight_ms(date(2024, 6, 30)),
        ny_midnight_ms(date(2024, 7, 7)),
    ]
    first_week, second_week = daily[:4], daily[4:]  # 4 July is a holiday
    for week, days in zip(weekly, (first_week, second_week), strict=True):
        assert week["o"] == days[0]["o"]
        assert week["c"] == days[-1]["c"]
        assert week["h"] == max(day["h"] for day in days)
        assert week["l"] == min(day["l"] for day in days)
        assert week["v"] == sum(day["v"] for day in days)
        assert week["n"] == sum(day["n"] for day in days)


def test_bars_are_deterministic_and_independent_of_the_range_asked(
    sim: PolygonSimulator,
) -> None:
    whole = aggs(sim, "TSLA", "1/day", "2023-12-01", "2024-02-29")["results"]
    again = aggs(sim, "TSLA", "1/day", "2023-12-01", "2024-02-29")["results"]
    january = aggs(sim, "TSLA", "1/day", "2024-01-01", "2024-01-31")["results"]
    with PolygonSimulator(now=NOW) as other:
        elsewhere = aggs(other, "TSLA", "1/day", "2023-12-01", "2024-02-29")["results"]

    assert again == whole
    assert elsewhere == whole
    january_start = ny_midnight_ms(date(2024, 1, 1))
    february_start = ny_midnight_ms(date(2024, 2, 1))
    assert january == [bar for bar in whole if january_start <= bar["t"] < february_start]


def test_different_tickers_have_different_prices(sim: PolygonSimulator) -> None:
    aapl = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-01")["results"][0]
    msft = aggs(sim, "MSFT", "1/day", "2024-07-01", "2024-07-01")["results"][0]
    assert aapl["c"] != msft["c"]


@pytest.mark.parametrize("ticker", ["AAPL", "BRK.B", "SPY", "X:BTCUSD", "X:DOGEUSD"])
def test_years_of_bars_are_consistent_ohlcv(sim: PolygonSimulator, ticker: str) -> None:
    bars = aggs(sim, ticker, "1/day", "2015-01-01", "2024-12-31")["results"]
    assert len(bars) == (3653 if ticker.startswith("X:") else 2516)
    assert_sane_bars(bars, fractional_volume=ticker.startswith("X:"))
    closes = [bar["c"] for bar in bars]
    daily_moves = [abs(b / a - 1) for a, b in zip(closes, closes[1:], strict=False)]
    assert max(daily_moves) < 0.25  # a random walk, not noise


def test_unknown_ticker_answers_200_without_results(sim: PolygonSimulator) -> None:
    body = aggs(sim, "NOSUCH", "1/day", "2024-07-01", "2024-07-31")
    assert_matches_spec(STOCK_AGGS, body)
    assert body["resultsCount"] == 0
    assert body["queryCount"] == 0
    assert body["ticker"] == "NOSUCH"
    assert "results" not in body


def test_generated_tickers_are_served_only_when_asked_for() -> None:
    with PolygonSimulator(now=NOW) as strict:
        assert aggs(strict, "SYM0001", "1/day", "2024-07-01", "2024-07-05")["resultsCount"] == 0
        assert get(strict, "/v3/reference/tickers/SYM0001").status_code == 404
    with PolygonSimulator(now=NOW, accept_any_ticker=True) as lenient:
        assert aggs(lenient, "SYM0001", "1/day", "2024-07-01", "2024-07-05")["resultsCount"] == 4
        assert aggs(lenient, "X:FOOUSD", "1/day", "2024-07-01", "2024-07-05")["resultsCount"] == 5
        assert get(lenient, "/v3/reference/tickers/SYM0001").status_code == 200


# ----------------------------------------------------------------------------------------------
# Any ticker: the local market of `make run`


@pytest.fixture
def market() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(now=NOW, accept_any_ticker=True) as simulator:
        yield simulator


def test_any_well_formed_ticker_has_details(market: PolygonSimulator) -> None:
    ibm = get(market, "/v3/reference/tickers/IBM").json()
    assert_matches_spec(TICKER_DETAILS, ibm)
    assert ibm["results"]["name"] == "IBM Holdings Inc."
    assert ibm["results"]["market"] == "stocks"
    avax = get(market, "/v3/reference/tickers/X:AVAXUSD").json()
    assert_matches_spec(TICKER_DETAILS, avax)
    assert avax["results"]["name"] == "AVAX - United States Dollar"
    assert avax["results"]["market"] == "crypto"


@pytest.mark.parametrize("ticker", sorted(UNKNOWN_TICKERS) + ["ibm", "X:AVAX", "TOOLONGTICKER"])
def test_unknown_and_malformed_tickers_are_unknown_as_at_polygon(
    market: PolygonSimulator, ticker: str
) -> None:
    details = get(market, f"/v3/reference/tickers/{ticker}")
    assert details.status_code == 404
    assert details.json()["status"] == "NOT_FOUND"
    body = aggs(market, ticker, "1/day", "2024-07-01", "2024-07-31")
    assert (body["resultsCount"], "results" in body) == (0, False)
    assert ticker not in market.tickers


def test_a_ticker_history_is_stable_and_its_own(market: PolygonSimulator) -> None:
    year = aggs(market, "IBM", "1/day", "2024-01-01", "2024-12-31")["results"]
    with PolygonSimulator(now=NOW, accept_any_ticker=True) as again:
        week = aggs(again, "IBM", "1/day", "2024-03-04", "2024-03-08")["results"]
    assert week == [bar for bar in year if ny_midnight_ms(date(2024, 3, 4)) <= bar["t"]][:5]
    other = aggs(market, "ORCL", "1/day", "2024-03-04", "2024-03-08")["results"]
    assert [bar["c"] for bar in other] != [bar["c"] for bar in week]


def test_missing_sessions_leave_gaps_at_every_timeframe(market: PolygonSimulator) -> None:
    # IBM's one missing session of 2024 is 1 February: 252 NYSE sessions, 251 daily bars.
    daily = aggs(market, "IBM", "1/day", "2024-01-01", "2024-12-31")["results"]
    stamps = {bar["t"] for bar in daily}
    sessions = trading_days(date(2024, 1, 1), date(2024, 12, 31))
    assert (len(sessions), len(daily)) == (252, 251)
    assert [day for day in sessions if ny_midnight_ms(day) not in stamps] == [date(2024, 2, 1)]
    assert aggs(market, "IBM", "1/hour", "2024-02-01", "2024-02-01")["resultsCount"] == 0
    assert aggs(market, "IBM", "1/hour", "2024-02-02", "2024-02-02")["resultsCount"] == 7
    grouped = get(market, "/v2/aggs/grouped/locale/us/market/stocks/2024-02-01").json()
    assert "IBM" not in {row["T"] for row in grouped["results"]}


def test_flawed_bars_get_the_flags_validation_gives_them(market: PolygonSimulator) -> None:
    def flagged(ticker: str, asset_class: str) -> dict[date, list[str]]:
        bars = [
            SimpleNamespace(**bar)
            for bar in aggs(market, ticker, "1/day", "2024-01-01", "2024-12-31")["results"]
        ]
        masks = validate_bars(
            bars, timeframe="1d", asset_class=asset_class, thresholds=Thresholds.default()
        )
        zone = UTC if asset_class == "crypto" else NEW_YORK
        return {
            datetime.fromtimestamp(bar.t / 1000, tz=zone).date(): flag_names(mask)
            for bar, mask in zip(bars, masks, strict=True)
            if mask
        }

    # IBM: a twenty-fold volume on 10 October, a close half as high again on 9 December that
    # the next session's open drops back from.
    assert flagged("IBM", "stock") == {
        date(2024, 10, 10): ["volume_spike"],
        date(2024, 12, 9): ["price_jump"],
        date(2024, 12, 10): ["price_jump"],
    }
    # ORCL: a high below the close on 15 October (the one severe flaw) and a volume spike.
    assert flagged("ORCL", "stock") == {
        date(2024, 10, 15): ["ohlc_inconsistent"],
        date(2024, 12, 20): ["volume_spike"],
    }
    assert flagged("X:BTCUSD", "crypto") == {
        date(2024, 1, 16): ["ohlc_inconsistent"],
        date(2024, 9, 28): ["ohlc_inconsistent"],
    }


def test_the_core_universe_is_clean_unless_any_ticker_is_asked_for(
    sim: PolygonSimulator, market: PolygonSimulator
) -> None:
    # AAPL's local-market year misses 11 November; the default simulator's does not.
    assert aggs(sim, "AAPL", "1/day", "2024-01-01", "2024-12-31")["resultsCount"] == 252
    assert aggs(market, "AAPL", "1/day", "2024-01-01", "2024-12-31")["resultsCount"] == 251


def test_some_tickers_have_a_split_of_their_own(market: PolygonSimulator) -> None:
    body = get(market, SPLITS, ticker="KO").json()
    assert_matches_spec(SPLITS, body)
    assert [
        (row["ticker"], row["execution_date"], row["split_from"], row["split_to"])
        for row in body["results"]
    ] == [("KO", "2010-03-10", 1.0, 2.0)]
    assert get(market, SPLITS, ticker="IBM").json()["results"] == []
    # Before the split, adjusted prices are the traded ones halved; after it they agree.
    before = {
        adjusted: aggs(market, "KO", "1/day", "2010-03-09", "2010-03-10", adjusted=adjusted)[
            "results"
        ]
        for adjusted in ("true", "false")
    }
    assert before["true"][0]["c"] == pytest.approx(before["false"][0]["c"] / 2, abs=1e-4)
    assert before["true"][1]["c"] == before["false"][1]["c"]
    # Once asked about, a ticker's split is in the unfiltered listing, as the planner reads it.
    listed = get(market, SPLITS, **{"execution_date.gte": "2010-01-01", "limit": "1000"}).json()
    assert ("KO", "2010-03-10") in {(r["ticker"], r["execution_date"]) for r in listed["results"]}


def test_the_default_simulator_derives_no_splits(sim: PolygonSimulator) -> None:
    sim.add_ticker("KO")
    assert get(sim, SPLITS, ticker="KO").json()["results"] == []


def test_added_tickers_are_served(sim: PolygonSimulator) -> None:
    sim.add_ticker("ZZZ", name="Zed Corp")
    assert aggs(sim, "ZZZ", "1/day", "2024-07-01", "2024-07-05")["resultsCount"] == 4
    details = get(sim, "/v3/reference/tickers/ZZZ").json()["results"]
    assert details["name"] == "Zed Corp"


def test_no_bars_after_the_simulated_present(sim: PolygonSimulator) -> None:
    body = aggs(sim, "AAPL", "1/day", "2025-06-27", "2025-07-03")
    assert [bar["t"] for bar in body["results"]] == [
        ny_midnight_ms(date(2025, 6, 27)),
        ny_midnight_ms(date(2025, 6, 30)),
    ]


def test_millisecond_bounds_are_accepted(sim: PolygonSimulator) -> None:
    start, end = ny_midnight_ms(date(2024, 7, 2)), ny_midnight_ms(date(2024, 7, 5))
    body = aggs(sim, "AAPL", "1/day", str(start), str(end))
    assert [bar["t"] for bar in body["results"]] == [
        ny_midnight_ms(date(2024, 7, 2)),
        ny_midnight_ms(date(2024, 7, 3)),
        ny_midnight_ms(date(2024, 7, 5)),
    ]


def test_descending_sort(sim: PolygonSimulator) -> None:
    ascending = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-12")["results"]
    descending = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-12", sort="desc")["results"]
    assert descending == ascending[::-1]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/aggs/ticker/AAPL/range/1/fortnight/2024-07-01/2024-07-02", "timespan must be"),
        ("/v2/aggs/ticker/AAPL/range/2/day/2024-07-01/2024-07-02", "not 2/day"),
        ("/v2/aggs/ticker/AAPL/range/0/day/2024-07-01/2024-07-02", "multiplier must be"),
        ("/v2/aggs/ticker/AAPL/range/1/day/July/2024-07-02", "from must be a date"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-02?adjusted=maybe", "adjusted"),
        ("/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-02?cursor=bogus", "cursor"),
    ],
)
def test_bad_parameters_answer_400(sim: PolygonSimulator, path: str, message: str) -> None:
    response = requests.get(sim.url + path, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "ERROR"
    assert message in body["error"]


def test_unknown_route_answers_404(sim: PolygonSimulator) -> None:
    response = get(sim, "/v2/last/trade/AAPL")
    assert response.status_code == 404
    assert response.json()["status"] == "NOT_FOUND"


# ----------------------------------------------------------------------------------------------
# Paging


def test_pages_follow_next_url_until_all_bars_are_sent() -> None:
    with PolygonSimulator(now=NOW, page_size=5) as sim:
        whole = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-31", limit="50000")
        assert whole["resultsCount"] == 5
        assert whole["next_url"].startswith(f"{sim.url}/v2/aggs/ticker/AAPL/range/1/day/")
        assert "cursor=" in whole["next_url"]

        collected = list(whole["results"])
        counts = [whole["resultsCount"]]
        next_url = whole.get("next_url")
        while next_url:
            page = requests.get(next_url, timeout=5).json()
            assert_matches_spec(STOCK_AGGS, page)
            collected.extend(page["results"])
            counts.append(page["resultsCount"])
            next_url = page.get("next_url")

    with PolygonSimulator(now=NOW) as unpaged:
        expected = aggs(unpaged, "AAPL", "1/day", "2024-07-01", "2024-07-31")["results"]
    assert counts == [5, 5, 5, 5, 2]  # 22 sessions
    assert collected == expected


def test_limit_pages_below_the_page_size(sim: PolygonSimulator) -> None:
    first = aggs(sim, "AAPL", "1/day", "2024-07-01", "2024-07-31", limit="10")
    second = requests.get(first["next_url"], timeout=5).json()
    third = requests.get(second["next_url"], timeout=5).json()
    assert [first["resultsCount"], second["resultsCount"], third["resultsCount"]] == [10, 10, 2]
    assert "next_url" not in third


def test_next_url_keeps_the_query_and_carries_no_key() -> None:
    with PolygonSimulator(now=NOW, page_size=3, api_key="sim-secret") as sim:
        headers = {"Authorization": "Bearer sim-secret"}
        url = f"{sim.url}/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-12"
        first = requests.get(
            url, params={"adjusted": "false", "sort": "desc"}, headers=headers, timeout=5
        ).json()
        assert "sim-secret" not in first["next_url"]
        assert "apiKey" not in first["next_url"]

        assert requests.get(first["next_url"], timeout=5).status_code == 401
        second = requests.get(first["next_url"], headers=headers, timeout=5).json()

    assert second["adjusted"] is False
    assert second["results"][0]["t"] < first["results"][-1]["t"]  # still descending


# ----------------------------------------------------------------------------------------------
# Grouped daily


def test_grouped_stocks_match_the_spec_and_equal_the_range_bars(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/grouped/locale/us/market/stocks/2024-07-03").json()

    assert_matches_spec(GROUPED_STOCKS, body)
    assert [row["T"] for row in body["results"]] == sorted(DEFAULT_STOCKS)
    assert body["resultsCount"] == len(DEFAULT_STOCKS)
    # Stamped at 16:00 New York, as Polygon's grouped rows are, even though 3 July 2024 closed
    # early at 13:00.
    assert {row["t"] for row in body["results"]} == {1720036800000}
    aapl = next(row for row in body["results"] if row["T"] == "AAPL")
    daily = aggs(sim, "AAPL", "1/day", "2024-07-03", "2024-07-03")["results"][0]
    assert {k: v for k, v in aapl.items() if k not in ("T", "t")} == {
        k: v for k, v in daily.items() if k != "t"
    }


def test_grouped_stocks_on_a_holiday_are_empty(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/grouped/locale/us/market/stocks/2024-07-04").json()
    assert_matches_spec(GROUPED_STOCKS, body)
    assert body["resultsCount"] == 0
    assert "results" not in body


def test_grouped_crypto_on_a_sunday(sim: PolygonSimulator) -> None:
    body = get(sim, "/v2/aggs/grouped/locale/global/market/crypto/2024-07-07").json()
    assert_matches_spec(GROUPED_CRYPTO, body)
    assert [row["T"] for row in body["results"]] == sorted(DEFAULT_CRYPTO)
    # The last minute of the UTC day: a caller that keyed rows by `t` in New York time would
    # file them under the wrong date, which is why rows are keyed by the date asked for.
    assert {row["t"] for row in body["results"]} == {utc_midnight_ms(date(2024, 7, 8)) - 60_000}


# ----------------------------------------------------------------------------------------------
# Splits


def test_splits_match_the_spec_and_filter(sim: PolygonSimulator) -> None:
    sim.add_split("NVDA", date(2024, 6, 10), 1, 10)
    sim.add_split("NVDA", date(2021, 7, 20), 1, 4)
    sim.add_split("TSLA", date(2022, 8, 25), 1, 3)

    body = get(
        sim, SPLITS, ticker="NVDA", **{"execution_date.gte": "2021-01-01"}, order="asc"
    ).json()

    assert_matches_spec(SPLITS, body)
    assert [
        (row["ticker"], row["execution_date"], row["split_from"], row["split_to"])
        for row in body["results"]
    ] == [
        ("NVDA", "2021-07-20", 1.0, 4.0),
        ("NVDA", "2024-06-10", 1.0, 10.0),
    ]
    assert body["status"] == "OK"
    assert all(row["id"] for row in body["results"])
    later = get(sim, SPLITS, ticker="NVDA", **{"execution_date.gte": "2022-01-01"}).json()
    assert [row["execution_date"] for row in later["results"]] == ["2024-06-10"]
    assert get(sim, SPLITS, ticker="AAPL").json()["results"] == []


def test_splits_page_with_next_url(sim: PolygonSimulator) -> None:
    for year in (2020, 2021, 2022):
        sim.add_split("AAPL", date(year, 3, 1), 1, 2)
    first = get(sim, SPLITS, ticker="AAPL", limit="2", order="asc").json()
    second = requests.get(first["next_url"], timeout=5).json()
    assert [row["execution_date"] for row in first["results"]] == ["2020-03-01", "2021-03-01"]
    assert [row["execution_date"] for row in second["results"]] == ["2022-03-01"]
    assert_matches_spec(SPLITS, second)
    assert "next_url" not in second


def test_a_split_changes_earlier_adjusted_prices(sim: PolygonSimulator) -> None:
    span = ("AAPL", "1/day", "2024-07-01", "2024-07-05")
    before_adjusted = aggs(sim, *span)["results"]
    before_raw = aggs(sim, *span, adjusted="false")["results"]
    assert before_adjusted == before_raw

    sim.add_split("AAPL", date(2024, 7, 3), 1, 4)
    adjusted = aggs(sim, *span)["results"]
    raw = aggs(sim, *span, adjusted="false")["results"]

    # Adjusted: every price in post-split shares (a quarter), volumes four times larger.
    for old, new in zip(before_adjusted, adjusted, strict=True):
        assert new["c"] == pytest.approx(old["c"] / 4, abs=1e-4)
        assert new["v"] == old["v"] * 4
    # Unadjusted: unchanged before the execution date, a quarter from it on (the traded drop).
    assert raw[:2] == before_raw[:2]
    for old, new in zip(before_raw[2:], raw[2:], strict=True):
        assert new["o"] == pytest.approx(old["o"] / 4, abs=1e-4)
    assert aggs(sim, *span, adjusted="false")["adjusted"] is False


# ----------------------------------------------------------------------------------------------
# Ticker details


def test_ticker_details_match_the_spec(sim: PolygonSimulator) -> None:
    response = get(sim, "/v3/reference/tickers/BRK.B")
    assert response.status_code == 200
    body = response.json()
    assert_matches_spec(TICKER_DETAILS, body)
    results = body["results"]
    assert (results["ticker"], results["market"], results["locale"], results["type"]) == (
        "BRK.B",
        "stocks",
        "us",
        "CS",
    )
    assert (results["ticker_root"], results["ticker_suffix"]) == ("BRK", "B")
    assert results["active"] is True

    crypto = get(sim, "/v3/reference/tickers/X:BTCUSD").json()
    assert_matches_spec(TICKER_DETAILS, crypto)
    assert (crypto["results"]["market"], crypto["results"]["locale"]) == ("crypto", "global")
    etf = get(sim, "/v3/reference/tickers/SPY").json()
    assert etf["results"]["type"] == "ETF"


def test_unknown_ticker_details_answer_404(sim: PolygonSimulator) -> None:
    response = get(sim, "/v3/reference/tickers/AAPLL")
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "NOT_FOUND"
    assert body["message"] == "Ticker not found."


# ----------------------------------------------------------------------------------------------
# Authentication


def test_a_configured_key_is_required() -> None:
    with PolygonSimulator(now=NOW, api_key="sim-secret") as sim:
        path = "/v3/reference/tickers/AAPL"
        missing = requests.get(sim.url + path, timeout=5)
        wrong = requests.get(sim.url + path, headers={"Authorization": "Bearer nope"}, timeout=5)
        bearer = requests.get(
            sim.url + path, headers={"Authorization": "Bearer sim-secret"}, timeout=5
        )
        query = requests.get(sim.url + path, params={"apiKey": "sim-secret"}, timeout=5)

    for refused in (missing, wrong):
        assert refused.status_code == 401
        body = refused.json()
        assert set(body) == {"status", "request_id", "error"}
        assert (body["status"], body["error"]) == ("ERROR", "Unknown API Key")
    assert bearer.status_code == 200
    assert query.status_code == 200


# ----------------------------------------------------------------------------------------------
# Faults


DAILY = "/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-05"


def test_rate_limit_with_retry_after_for_a_number_of_requests(sim: PolygonSimulator) -> None:
    fault = sim.inject_fault("rate_limit", times=2, retry_after=3)
    first, second, third = (get(sim, DAILY) for _ in range(3))

    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == "3"
    assert first.json()["status"] == "ERROR"
    assert fault.remaining == 0
    assert sim.faults == []


def test_rate_limit_without_retry_after(sim: PolygonSimulator) -> None:
    sim.inject_fault("rate_limit", retry_after=None)
    response = get(sim, DAILY)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_rate_limit_defaults_to_one_second(sim: PolygonSimulator) -> None:
    sim.inject_fault("rate_limit")
    assert get(sim, DAILY).headers["Retry-After"] == "1"


def test_faults_for_one_ticker_leave_the_others_alone(sim: PolygonSimulator) -> None:
    sim.inject_fault("server_error", ticker="MSFT")
    assert get(sim, DAILY).status_code == 200
    assert get(sim, "/v3/reference/tickers/MSFT").status_code == 500
    assert get(sim, "/v3/reference/tickers/MSFT").status_code == 200


def test_server_error_with_a_chosen_status(sim: PolygonSimulator) -> None:
    sim.inject_fault("server_error")
    sim.inject_fault("server_error", status=503)
    assert [get(sim, DAILY).status_code for _ in range(3)] == [500, 503, 200]


def test_slow_answers_outlast_a_short_timeout(sim: PolygonSimulator) -> None:
    sim.inject_fault("slow", seconds=2)
    # Connected at once, then no answer within the 0.5 s read timeout: the delay is real.
    with pytest.raises(requests.ReadTimeout):
        requests.get(sim.url + DAILY, timeout=(5, 0.5))
    # The fault was used up by that request: the next one is answered normally.
    assert get(sim, DAILY).status_code == 200


def test_slow_answers_arrive_after_the_delay(sim: PolygonSimulator) -> None:
    sim.inject_fault("slow", seconds=0.2)
    started = clock.monotonic()
    response = get(sim, DAILY)
    assert clock.monotonic() - started >= 0.2
    assert response.status_code == 200
    assert response.json()["resultsCount"] == 4


def test_malformed_json(sim: PolygonSimulator) -> None:
    sim.inject_fault("malformed_json")
    response = get(sim, DAILY)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_unauthorized_and_forbidden(sim: PolygonSimulator) -> None:
    sim.inject_fault("unauthorized")
    sim.inject_fault("forbidden")
    unauthorized, forbidden = get(sim, DAILY), get(sim, DAILY)

    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"] == "Unknown API Key"
    assert forbidden.status_code == 403
    body = forbidden.json()
    assert body["status"] == "NOT_AUTHORIZED"
    assert "not entitled" in body["message"]


def test_delayed_data(sim: PolygonSimulator) -> None:
    sim.inject_fault("delayed")
    body = get(sim, DAILY).json()
    assert_matches_spec(STOCK_AGGS, body)
    assert body["status"] == "DELAYED"
    assert body["resultsCount"] == 4


def test_a_fault_without_a_count_lasts_until_cleared(sim: PolygonSimulator) -> None:
    sim.inject_fault("server_error", times=None)
    assert [get(sim, DAILY).status_code for _ in range(3)] == [500, 500, 500]
    sim.clear_faults()
    assert get(sim, DAILY).status_code == 200


def test_fault_arguments_are_checked(sim: PolygonSimulator) -> None:
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        sim.inject_fault("explode")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes no option"):
        sim.inject_fault("server_error", retry_after=1)
    with pytest.raises(TypeError, match="needs seconds"):
        sim.inject_fault("slow")
    with pytest.raises(ValueError, match="times must be at least 1"):
        sim.inject_fault("rate_limit", times=0)


# ----------------------------------------------------------------------------------------------
# Request log and lifecycle


def test_the_request_log_records_method_path_query_and_headers(sim: PolygonSimulator) -> None:
    requests.get(
        sim.url + "/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-07-01/2024-07-02",
        params={"adjusted": "true", "limit": "10"},
        headers={"Authorization": "Bearer abc"},
        timeout=5,
    )
    [recorded] = sim.requests
    assert recorded.method == "GET"
    assert recorded.path == "/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-07-01/2024-07-02"
    assert recorded.query == {"adjusted": "true", "limit": "10"}
    assert recorded.headers["Authorization"] == "Bearer abc"
    assert recorded.header("authorization") == "Bearer abc"

    sim.clear_log()
    assert sim.requests == []


def test_the_request_log_is_safe_under_concurrent_requests(sim: PolygonSimulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: get(sim, DAILY).status_code, range(40)))
    assert statuses == [200] * 40
    assert len(sim.requests) == 40


def test_a_stopped_simulator_refuses_connections() -> None:
    sim = PolygonSimulator(now=NOW).start()
    url = sim.url
    session = requests.Session()
    assert session.get(url + DAILY, timeout=5).status_code == 200
    sim.stop()
    # Even the pooled keep-alive connection is gone.
    with pytest.raises(requests.ConnectionError):
        session.get(url + DAILY, timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.url


def test_starting_twice_is_an_error(sim: PolygonSimulator) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        sim.start()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("stop_signal", "inherited"),
    [
        (signal.SIGINT, None),
        # What a shell's `command &` does; Python then installs no KeyboardInterrupt handler.
        (signal.SIGINT, _ignore_sigint),
        (signal.SIGTERM, None),
    ],
    ids=["sigint", "sigint-ignored-by-the-parent", "sigterm"],
)
def test_the_command_line_serves_until_interrupted(
    stop_signal: signal.Signals, inherited: Any
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.polygon_sim", "--port", "0", "--page-size", "2"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=inherited,  # only a signal disposition, set before exec
    )
    try:
        assert process.stdout is not None
        banner = _first_line_within(process, seconds=20)
        url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        body = requests.get(url + DAILY, timeout=5).json()
        assert body["resultsCount"] == 2
        assert body["next_url"].startswith(url)
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        # Bounded whatever happened above: a process that did not stop is killed, not waited on.
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def _first_line_within(process: subprocess.Popen[str], *, seconds: float) -> str:
    """The process's first line of output, or a failure once `seconds` have passed."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    if not ready:
        pytest.fail(f"no banner within {seconds} s")
    return process.stdout.readline()
