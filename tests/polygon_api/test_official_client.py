"""Polygon's official Python client (`massive`), unchanged, against a real local server whose
bars came from the Polygon simulator through the real backfill. Every answer is compared bar
for bar with the native endpoint, or with pandas resampling the native endpoint's base bars
(an independent computation): over a DST change (3 Nov 2024), a half-day (29 Nov 2024, closing
at 13:00) and crypto weekends."""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest
from massive import RESTClient
from massive.exceptions import BadResponse

from chalicelib import container, db
from chalicelib.backfill import repository as backfill_repository
from chalicelib.backfill.service import backfill_one
from chalicelib.polygon import PolygonClient
from devtools.local_server import LocalServer, bind
from devtools.polygon_sim import PolygonSimulator
from tests.conftest import truncate_data
from tests.factories import make_key, make_symbol

SIM_KEY = "sim-key-official-client"
NEW_YORK = "America/New_York"
# Five weeks around the end of DST (Sun 3 Nov 2024), Thanksgiving and its half-day (29 Nov).
MINUTES_FROM = date(2024, 10, 28)
DAILY_FROM = date(2024, 1, 1)
BACKFILL_NOW = datetime(2024, 12, 4, 12, tzinfo=UTC)
SYMBOLS = (
    ("AAPL", "stock", ["1m", "1d"]),
    ("MSFT", "stock", ["1d"]),
    ("BTC", "crypto", ["1m", "1d"]),
)
FIELDS = ("timestamp", "open", "high", "low", "close", "volume", "vwap", "transactions")
# A 10-for-1 split inside the daily range: MSFT's traded and adjusted prices differ before it.
MSFT_SPLIT = date(2024, 6, 10)


class Warehouse:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.client = RESTClient(api_key=key, base=url, retries=0)

    def native(
        self, symbol: str, timeframe: str, start: date, end: date, *, adjusted: bool = True
    ) -> list[dict[str, Any]]:
        """Every bar of the native endpoint for the range, all pages."""
        bars: list[dict[str, Any]] = []
        cursor = ""
        while True:
            path = (
                f"/api/v1/historical/{symbol}?timeframe={timeframe}&start={start}&end={end}"
                f"&adjusted={str(adjusted).lower()}&limit=50000{cursor}"
            )
            request = urllib.request.Request(
                self.url + path, headers={"Authorization": f"Bearer {self.key}"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                page = json.loads(response.read())
            bars.extend(page["bars"])
            if not page["next_cursor"]:
                return bars
            cursor = f"&cursor={page['next_cursor']}"


@pytest.fixture(scope="module")
def warehouse(database_url: str) -> Iterator[Warehouse]:
    truncate_data(database_url)
    container.reset()
    with db.connect(database_url) as conn, conn.transaction():
        tracked = [make_symbol(conn, s, asset_class=a, timeframes=t) for s, a, t in SYMBOLS]
        key = make_key(conn).raw_key
        for symbol, day, split_from, split_to in [
            ("AAPL", date(2020, 8, 31), 1, 4),
            ("TSLA", date(2020, 8, 31), 1, 5),
            ("TSLA", date(2022, 8, 25), 1, 3),
            ("GE", date(2021, 8, 2), 8, 1),
        ]:
            backfill_repository.upsert_split(
                conn, symbol=symbol, execution_date=day, split_from=split_from, split_to=split_to
            )
    with (
        PolygonSimulator(api_key=SIM_KEY) as simulator,
        PolygonClient(simulator.url, SIM_KEY, timeout=10) as provider,
    ):
        simulator.add_split("MSFT", MSFT_SPLIT, 1, 10)
        for row in tracked:
            for timeframe in row.timeframes:
                result = backfill_one(
                    db.get_database(),
                    provider,
                    row,
                    timeframe,
                    since=MINUTES_FROM if timeframe == "1m" else DAILY_FROM,
                    now=lambda: BACKFILL_NOW,
                )
                assert result.status == "completed", result
    server = LocalServer(bind("127.0.0.1", 0), request_lines=io.StringIO()).start()
    try:
        yield Warehouse(f"http://{server.host}:{server.port}", key)
    finally:
        server.stop()
        container.reset()  # closes the pool the server used
        truncate_data(database_url)


def as_rows(aggs: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(agg, field) for field in FIELDS) for agg in aggs]


def native_rows(bars: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            int(datetime.fromisoformat(bar["time"]).timestamp() * 1000),
            bar["open"],
            bar["high"],
            bar["low"],
            bar["close"],
            bar["volume"],
            bar["vwap"],
            bar["trades"],
        )
        for bar in bars
    ]


def resample(bars: list[dict[str, Any]], zone: str, rule: str, **options: Any) -> list[tuple]:
    """pandas' own resampling of native bars on the wall clock of `zone`: first, max, min, last,
    sums, volume-weighted vwap; each bucket stamped with its start as epoch ms."""
    frame = pd.DataFrame(bars)
    local = pd.to_datetime(frame["time"], utc=True).dt.tz_convert(zone).dt.tz_localize(None)
    frame = frame.assign(weighted=frame["vwap"] * frame["volume"]).set_index(local)
    grouped = frame.resample(rule, **options).agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "weighted": "sum",
            "trades": "sum",
            "time": "count",
        }
    )
    grouped = grouped[grouped["time"] > 0]
    starts = grouped.index.tz_localize(zone).tz_convert("UTC")
    return [
        (
            int(start.timestamp() * 1000),
            row.open,
            row.high,
            row.low,
            row.close,
            row.volume,
            row.weighted / row.volume,
            int(row.trades),
        )
        for start, row in zip(starts, grouped.itertuples(), strict=True)
    ]


def assert_same_bars(served: list[tuple], expected: list[tuple]) -> None:
    assert len(served) == len(expected)
    for got, want in zip(served, expected, strict=True):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], rel=1e-9)


# --- stored timeframes, read as they are, paged --------------------------------------------------


@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_a_year_of_daily_bars_pages_like_the_native_endpoint(warehouse, sort):
    native = native_rows(warehouse.native("AAPL", "1d", DAILY_FROM, date(2024, 12, 3)))

    served = as_rows(
        warehouse.client.list_aggs(
            "AAPL", 1, "day", "2024-01-01", "2024-12-03", sort=sort, limit=60
        )
    )

    assert len(native) > 230  # a year of sessions: several pages of 60
    assert served == (native if sort == "asc" else native[::-1])


def test_minute_bars_page_like_the_native_endpoint_across_dst_and_a_half_day(warehouse):
    native = native_rows(warehouse.native("AAPL", "1m", date(2024, 10, 31), date(2024, 11, 29)))

    served = as_rows(
        warehouse.client.list_aggs(
            "AAPL", 1, "minute", "2024-10-31", "2024-11-29", limit=5000, adjusted=True
        )
    )

    assert served == native
    half_day = [
        t for t, *_ in served if t >= int(datetime(2024, 11, 29, tzinfo=UTC).timestamp() * 1000)
    ]
    assert len(half_day) == 210  # 09:30 to 13:00 New York
    assert half_day[-1] == 1732903140000  # 12:59 New York, as the simulator's session ends


def test_get_aggs_is_the_first_page_only(warehouse):
    first_page = warehouse.client.get_aggs("AAPL", 1, "day", "2024-01-01", "2024-12-03", limit=10)

    assert (
        as_rows(first_page)
        == native_rows(warehouse.native("AAPL", "1d", DAILY_FROM, date(2024, 12, 3)))[:10]
    )


def test_crypto_weekend_days_are_served_at_utc_midnight(warehouse):
    served = as_rows(warehouse.client.list_aggs("X:BTCUSD", 1, "day", "2024-11-01", "2024-11-30"))

    assert served == native_rows(
        warehouse.native("BTC", "1d", date(2024, 11, 1), date(2024, 11, 30))
    )
    assert len(served) == 30  # weekends included
    assert all(t % 86_400_000 == 0 for t, *_ in served)


# --- resampled on the server, checked against pandas ---------------------------------------------


@pytest.mark.parametrize(
    ("multiplier", "timespan", "rule"),
    [(5, "minute", "5min"), (1, "hour", "1h"), (4, "hour", "4h")],
)
@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_stock_intraday_buckets_match_pandas_on_new_york_time(
    warehouse, multiplier, timespan, rule, sort
):
    minutes = warehouse.native("AAPL", "1m", date(2024, 10, 31), date(2024, 11, 29))
    expected = resample(minutes, NEW_YORK, rule)

    served = as_rows(
        warehouse.client.list_aggs(
            "AAPL", multiplier, timespan, "2024-10-31", "2024-11-29", sort=sort, limit=100
        )
    )

    assert_same_bars(served, expected if sort == "asc" else expected[::-1])


def test_hour_bars_follow_new_york_across_the_dst_change(warehouse):
    served = as_rows(warehouse.client.list_aggs("AAPL", 1, "hour", "2024-11-01", "2024-11-04"))
    starts = [datetime.fromtimestamp(t / 1000, UTC) for t, *_ in served]

    # 09:00 New York: 13:00 UTC on Friday under DST, 14:00 UTC on Monday after it ends.
    assert starts[0] == datetime(2024, 11, 1, 13, tzinfo=UTC)
    assert datetime(2024, 11, 4, 14, tzinfo=UTC) in starts
    assert datetime(2024, 11, 4, 13, tzinfo=UTC) not in starts


def test_crypto_hours_and_weekend_days_match_pandas_on_utc(warehouse):
    minutes = warehouse.native("BTC", "1m", date(2024, 11, 1), date(2024, 11, 4))

    served_hours = as_rows(
        warehouse.client.list_aggs("X:BTCUSD", 1, "hour", "2024-11-01", "2024-11-04", limit=50)
    )
    served_days = as_rows(
        warehouse.client.list_aggs("X:BTCUSD", 24, "hour", "2024-11-01", "2024-11-04")
    )

    assert len(served_hours) == 96  # four UTC days, Saturday and Sunday included
    assert_same_bars(served_hours, resample(minutes, "UTC", "1h"))
    assert_same_bars(served_days, resample(minutes, "UTC", "1D"))


@pytest.mark.parametrize(
    ("symbol", "ticker", "zone"), [("AAPL", "AAPL", NEW_YORK), ("BTC", "X:BTCUSD", "UTC")]
)
@pytest.mark.parametrize(
    ("multiplier", "timespan", "rule", "options"),
    [
        (1, "week", "W-SUN", {"closed": "left", "label": "left"}),
        (1, "month", "MS", {}),
        (1, "quarter", "QS", {}),
        (1, "year", "YS", {}),
    ],
)
def test_weeks_months_quarters_and_years_match_pandas(
    warehouse, symbol, ticker, zone, multiplier, timespan, rule, options
):
    days = warehouse.native(symbol, "1d", DAILY_FROM, date(2024, 12, 3))
    expected = resample(days, zone, rule, **options)

    served = as_rows(
        warehouse.client.list_aggs(
            ticker, multiplier, timespan, "2024-01-01", "2024-12-03", limit=7
        )
    )

    assert_same_bars(served, expected)
    # Weeks start on Sunday at midnight in the market's zone.
    if timespan == "week":
        first = pd.Timestamp(served[0][0], unit="ms", tz="UTC").tz_convert(zone)
        assert (first.day_name(), first.hour) == ("Sunday", 0)


# --- adjusted and traded prices ------------------------------------------------------------------


@pytest.mark.parametrize("adjusted", [True, False])
@pytest.mark.parametrize("sort", ["asc", "desc"])
def test_adjusted_and_traded_daily_bars_page_like_the_native_endpoint(warehouse, adjusted, sort):
    native = native_rows(
        warehouse.native("MSFT", "1d", DAILY_FROM, date(2024, 12, 3), adjusted=adjusted)
    )

    served = as_rows(
        warehouse.client.list_aggs(
            "MSFT", 1, "day", "2024-01-01", "2024-12-03", adjusted=adjusted, sort=sort, limit=60
        )
    )

    assert served == (native if sort == "asc" else native[::-1])


def test_traded_prices_are_the_adjusted_ones_in_pre_split_shares(warehouse):
    args = ("MSFT", 1, "day", "2024-01-01", "2024-12-03")
    adjusted = as_rows(warehouse.client.get_aggs(*args, adjusted=True))
    traded = as_rows(warehouse.client.get_aggs(*args, adjusted=False))
    split_at = int(datetime(2024, 6, 10, 4, tzinfo=UTC).timestamp() * 1000)  # 00:00 New York

    assert [row[0] for row in traded] == [row[0] for row in adjusted]
    for mine, theirs in zip(traded, adjusted, strict=True):
        ratio = 10 if mine[0] < split_at else 1
        assert mine[1:5] == pytest.approx([price * ratio for price in theirs[1:5]], rel=1e-12)
        assert mine[5] == pytest.approx(theirs[5] / ratio, rel=1e-12)
        assert mine[6] == pytest.approx(theirs[6] * ratio, rel=1e-12)
        assert mine[7] == theirs[7]
    assert sum(row[0] < split_at for row in traded) > 100


@pytest.mark.parametrize("adjusted", [True, False])
def test_weeks_across_a_split_match_pandas_on_the_same_prices(warehouse, adjusted):
    days = warehouse.native("MSFT", "1d", DAILY_FROM, date(2024, 12, 3), adjusted=adjusted)
    expected = resample(days, NEW_YORK, "W-SUN", closed="left", label="left")

    served = as_rows(
        warehouse.client.list_aggs(
            "MSFT", 1, "week", "2024-01-01", "2024-12-03", adjusted=adjusted, limit=9
        )
    )

    assert_same_bars(served, expected)


def test_grouped_daily_serves_traded_prices_too(warehouse):
    before_split = "2024-06-07"
    adjusted = warehouse.client.get_grouped_daily_aggs(before_split)
    traded = warehouse.client.get_grouped_daily_aggs(before_split, adjusted=False)

    assert [agg.ticker for agg in traded] == ["AAPL", "MSFT"]
    assert as_rows(traded) == [
        row
        for ticker in ("AAPL", "MSFT")
        for row in native_rows(
            warehouse.native(ticker, "1d", date(2024, 6, 7), date(2024, 6, 7), adjusted=False)
        )
    ]
    msft_adjusted, msft_traded = adjusted[1], traded[1]
    assert msft_traded.close == pytest.approx(msft_adjusted.close * 10, rel=1e-12)
    assert as_rows(traded[:1]) == as_rows(adjusted[:1])  # AAPL: no split in the warehouse since


# --- grouped daily, splits, errors ----------------------------------------------------------------


def test_grouped_daily_holds_each_tracked_symbols_bar_of_that_day(warehouse):
    stocks = warehouse.client.get_grouped_daily_aggs("2024-11-29")
    crypto = warehouse.client.get_grouped_daily_aggs(
        "2024-11-30", locale="global", market_type="crypto"
    )

    assert [agg.ticker for agg in stocks] == ["AAPL", "MSFT"]
    for agg in stocks:
        native = native_rows(
            warehouse.native(agg.ticker, "1d", date(2024, 11, 29), date(2024, 11, 29))
        )
        assert as_rows([agg]) == native
    assert [agg.ticker for agg in crypto] == ["X:BTCUSD"]  # a Saturday
    assert as_rows(crypto) == native_rows(
        warehouse.native("BTC", "1d", date(2024, 11, 30), date(2024, 11, 30))
    )


def test_list_splits_filters_and_follows_next_url(warehouse):
    everything = list(warehouse.client.list_splits(limit=1))
    tsla = list(warehouse.client.list_splits(ticker="TSLA", order="desc"))
    since = list(warehouse.client.list_splits(execution_date_gte="2021-01-01"))

    assert [(s.ticker, s.execution_date) for s in everything] == [
        ("AAPL", "2020-08-31"),
        ("TSLA", "2020-08-31"),
        ("GE", "2021-08-02"),
        ("TSLA", "2022-08-25"),
        ("MSFT", "2024-06-10"),  # learnt by the backfill from the provider
    ]
    assert [(s.split_from, s.split_to) for s in tsla] == [(1, 3), (1, 5)]
    assert [s.ticker for s in since] == ["GE", "TSLA", "MSFT"]


def test_an_unknown_ticker_is_an_empty_answer_as_on_polygon(warehouse):
    assert list(warehouse.client.list_aggs("ZZZZ", 1, "day", "2024-01-01", "2024-12-03")) == []
    assert warehouse.client.get_aggs("ZZZZ", 1, "day", "2024-01-01", "2024-12-03") == []


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c: c.get_aggs("AAPL", 0, "day", "2024-01-01", "2024-01-05"), "multiplier"),
        (lambda c: c.get_aggs("AAPL", 10_000, "day", "2024-01-01", "2024-01-05"), "multiplier"),
        (lambda c: c.get_aggs("AAPL", 1, "fortnight", "2024-01-01", "2024-01-05"), "timespan"),
        (lambda c: c.get_aggs("AAPL", 1, "day", "2024-01-05", "2024-01-01"), "must not be after"),
        (lambda c: c.get_aggs("AAPL", 1, "day", "2024-01-01", "2024-01-05", limit=50_001), "limit"),
        (
            lambda c: c.get_aggs("MSFT", 1, "minute", "2024-01-01", "2024-01-05"),
            "not tracked at 1m",
        ),
    ],
)
def test_refusals_raise_what_the_client_raises_for_polygon(warehouse, call, words):
    with pytest.raises(BadResponse) as raised:
        call(warehouse.client)

    body = json.loads(str(raised.value))
    assert body["status"] == "ERROR"
    assert words in body["error"]
