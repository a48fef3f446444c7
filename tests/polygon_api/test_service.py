"""The Polygon-compatible service: parsing of path values (property-based where they are
parsers), which stored bars serve a request, the 6 MB page bound, and pinned wire formats."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.errors import BadRequest
from chalicelib.polygon_api import service
from chalicelib.polygon_api.models import AggsQuery
from chalicelib.polygon_api.service import AggsRequest, Bucketing, bucketing, parse_bound
from tests.factories import daily_times, make_bars, make_symbol

NEW_YORK = "America/New_York"


# --- from / to --------------------------------------------------------------------------------


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(9998, 12, 30)))
def test_a_date_is_the_whole_market_day_in_its_zone(day):
    for zone in (NEW_YORK, "UTC"):
        start = parse_bound(day.isoformat(), "from", zone, end=False)
        end = parse_bound(day.isoformat(), "to", zone, end=True)

        assert start.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == datetime(
            day.year, day.month, day.day
        )
        assert end.astimezone(ZoneInfo(zone)).date() == day + timedelta(days=1)
        assert timedelta(hours=23) <= end - start <= timedelta(hours=25)


@given(st.integers(min_value=-62_000_000_000_000, max_value=253_000_000_000_000))
def test_epoch_milliseconds_are_instants_and_to_includes_its_own(ms):
    start = parse_bound(str(ms), "from", NEW_YORK, end=False)
    end = parse_bound(str(ms), "to", NEW_YORK, end=True)

    assert (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) == ms
    assert end - start == timedelta(milliseconds=1)


@given(
    st.text(max_size=30).filter(
        lambda text: not re.fullmatch(r"-?[0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2}", text)
    )
)
def test_anything_else_is_a_bad_request_naming_the_parameter(text):
    with pytest.raises(BadRequest, match=r"^from must be a date \(YYYY-MM-DD\) or a Unix"):
        parse_bound(text, "from", NEW_YORK, end=False)


@pytest.mark.parametrize(
    "raw",
    [
        "2024-02-30",
        "2024-01-05\n",
        "١٧٠٤٠٦٧٢٠٠٠٠٠",
        "2024-1-05",
        "20240105x",
        "1e12",
        " 1",
        "99999999999999999",
    ],
)
def test_near_misses_are_refused(raw):
    with pytest.raises(BadRequest):
        parse_bound(raw, "to", "UTC", end=True)


# --- which bars serve a request --------------------------------------------------------------


@pytest.mark.parametrize(
    ("multiplier", "timespan", "tracked", "expected"),
    [
        (1, "day", ["1d"], Bucketing("1d", None, 1)),
        (5, "minute", ["1m", "5m"], Bucketing("5m", None, 1)),
        (5, "minute", ["1m"], Bucketing("1m", "minutes", 5)),
        (1, "hour", ["1m", "1h"], Bucketing("1h", None, 1)),
        (2, "hour", ["1m", "1h"], Bucketing("1m", "minutes", 120)),
        (1, "week", ["1d"], Bucketing("1d", "weeks", 1)),
        (1, "week", ["1d", "1w"], Bucketing("1w", None, 1)),
        (3, "day", ["1d"], Bucketing("1d", "days", 3)),
        (1, "month", ["1d"], Bucketing("1d", "months", 1)),
        (2, "quarter", ["1d"], Bucketing("1d", "months", 6)),
        (1, "year", ["1d"], Bucketing("1d", "months", 12)),
    ],
)
def test_a_tracked_size_is_read_as_stored_and_others_from_1m_or_1d(
    multiplier, timespan, tracked, expected
):
    assert bucketing(multiplier, timespan, tracked) == expected


def test_uneven_minute_sizes_restart_at_each_new_york_midnight(conn):
    make_symbol(conn, "AAPL", timeframes=["1m"])
    first = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 New York
    make_bars(conn, "AAPL", [first + timedelta(minutes=n) for n in range(10)], timeframe="1m")
    make_bars(conn, "AAPL", [first + timedelta(days=1)], timeframe="1m")
    request = AggsRequest("AAPL", "7", "minute", "2024-01-02", "2024-01-03")

    body = json.loads(
        service.aggs_page(conn, request, AggsQuery(), request_id="r", origin="http://h")
    )

    starts = [datetime.fromtimestamp(bar["t"] / 1000, UTC) for bar in body["results"]]
    # 09:30 New York is minute 570 of the day, 81 × 7 + 3: buckets start at 09:27 and 09:34.
    assert starts == [
        datetime(2024, 1, 2, 14, 27, tzinfo=UTC),
        datetime(2024, 1, 2, 14, 34, tzinfo=UTC),
        datetime(2024, 1, 3, 14, 27, tzinfo=UTC),
    ]
    assert [bar["v"] for bar in body["results"]][:2] == [
        sum(1000 + n for n in range(4)),
        sum(1000 + n for n in range(4, 10)),
    ]


# --- the response bound and the wire format ----------------------------------------------------


def test_a_page_over_the_response_bound_is_cut_and_continues_from_next_url(conn):
    make_symbol(conn, "AAPL")
    make_bars(conn, "AAPL", daily_times(date(2024, 1, 1), 40))
    request = AggsRequest("AAPL", "1", "day", "2024-01-01", "2024-02-09")

    first = json.loads(
        service.aggs_page(
            conn, request, AggsQuery(), request_id="r", origin="http://h", max_response_bytes=2500
        )
    )
    cursor = parse_qs(urlsplit(first["next_url"]).query)["cursor"][0]
    rest = json.loads(
        service.aggs_page(
            conn, request, AggsQuery(cursor=cursor), request_id="r", origin="http://h"
        )
    )

    assert 0 < first["resultsCount"] < 40
    assert first["resultsCount"] + rest["resultsCount"] == 40
    assert first["results"][-1]["t"] < rest["results"][0]["t"]


def test_next_url_is_pinned_path_and_query_without_a_stage(conn, set_env):
    set_env(CURSOR_SECRET="pinned-secret")
    make_symbol(conn, "BTC", asset_class="crypto")
    make_bars(conn, "BTC", daily_times(date(2024, 1, 1), 3, hour=0))
    request = AggsRequest("X:BTCUSD", "1", "day", "2024-01-01", "1704240000000")

    body = json.loads(
        service.aggs_page(
            conn, request, AggsQuery(limit=1), request_id="r", origin="https://api.example"
        )
    )

    assert body["next_url"] == (
        "https://api.example/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-01-01/1704240000000"
        "?cursor=WzIsWyJCVEMiLCIxL2RheS9hc2MvMjAyNC0wMS0wMS8xNzA0MjQwMDAwMDAwIixudWxsLG51bGws"
        "dHJ1ZSwiYXNjIix0cnVlXSwiQlRDIiwxNzA0MDY3MjAwMDAwMDAwXQ.YYP6JajIjmtePuzGTZpAwg"
        "&adjusted=true&sort=asc&limit=1"
    )
    # What the cursor carries (format version 2, chalicelib/marketdata/cursor.py): the query it
    # belongs to and the position of the last bar served, its symbol and its time (2024-01-01
    # 00:00 UTC, in microseconds).
    payload = parse_qs(urlsplit(body["next_url"]).query)["cursor"][0].split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == [
        2,
        ["BTC", "1/day/asc/2024-01-01/1704240000000", None, None, True, "asc", True],
        "BTC",
        1_704_067_200_000_000,
    ]


def test_a_split_id_is_pinned():
    # A split keeps its id across requests and pages: a hash of ticker and execution date.
    assert service._split_id("AAPL", date(2020, 8, 31)) == "E20538a42adddb5f8315aaf03d43d552d"
    assert service._split_id("AAPL", date(2014, 6, 9)) != service._split_id(
        "AAPL", date(2020, 8, 31)
    )
