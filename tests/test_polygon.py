"""The Polygon client against the simulator over real HTTP: the exact requests it sends, how it
pages, retries, paces and fails, and that its errors never show the key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests

from chalicelib.config import Settings
from chalicelib.errors import ConfigError
from chalicelib.market.tickers import provider_ticker
from chalicelib.polygon import (
    GroupedBar,
    PolygonAuthError,
    PolygonBadResponse,
    PolygonBar,
    PolygonClient,
    PolygonError,
    PolygonNotAuthorized,
    PolygonUnavailable,
    Split,
)
from devtools.polygon_sim import PolygonSimulator

KEY = "pk-test-9f8e7d6c5b4a"
NOW = datetime(2025, 6, 30, 22, 0, tzinfo=UTC)
AAPL_WEEK = "/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-05"


class Sleeps(list[float]):
    """Records the waits the client asks for, and waits for none of them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeClock:
    """A monotonic clock that only moves when told to, or when the client sleeps."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def sim() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=KEY, now=NOW) as simulator:
        yield simulator


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(sim: PolygonSimulator, sleeps: Sleeps, **overrides: Any) -> PolygonClient:
    options: dict[str, Any] = {"max_retries": 2, "jitter": 0.0, "sleep": sleeps, "timeout": 5.0}
    options.update(overrides)
    return PolygonClient(sim.url, KEY, **options)


@pytest.fixture
def client(sim: PolygonSimulator, sleeps: Sleeps) -> Iterator[PolygonClient]:
    with make_client(sim, sleeps) as polygon:
        yield polygon


def sim_json(sim: PolygonSimulator, path: str) -> Any:
    return requests.get(
        sim.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=5
    ).json()


# ----------------------------------------------------------------------------------------------
# What is sent


def test_aggregates_send_the_documented_request(
    sim: PolygonSimulator, client: PolygonClient
) -> None:
    pages = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5)))

    [sent] = sim.requests
    assert sent.method == "GET"
    assert sent.path == AAPL_WEEK
    assert sent.query == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    assert sent.header("Authorization") == f"Bearer {KEY}"
    assert "apiKey" not in sent.target
    assert client.request_count == 1

    expected = sim_json(sim, AAPL_WEEK)["results"]
    assert pages == [[PolygonBar(**row) for row in expected]]
    first = pages[0][0]
    assert first.t == 1719806400000  # 2024-07-01 00:00 New York
    assert isinstance(first.v, float)
    assert isinstance(first.n, int)


def test_aggregates_unadjusted_with_a_limit(sim: PolygonSimulator, client: PolygonClient) -> None:
    list(
        client.aggregates(
            "MSFT", 5, "minute", date(2024, 7, 1), date(2024, 7, 1), adjusted=False, limit=100
        )
    )
    [sent] = sim.requests
    assert sent.path == "/v2/aggs/ticker/MSFT/range/5/minute/2024-07-01/2024-07-01"
    assert sent.query == {"adjusted": "false", "sort": "asc", "limit": "100"}


def test_crypto_is_fetched_as_the_x_usd_pair(sim: PolygonSimulator, client: PolygonClient) -> None:
    ticker = provider_ticker("BTC", "crypto")
    [bars] = list(client.aggregates(ticker, 1, "day", date(2024, 7, 6), date(2024, 7, 7)))

    [sent] = sim.requests
    assert sent.target.startswith("/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-07-06/2024-07-07?")
    assert [bar.t for bar in bars] == [1720224000000, 1720310400000]  # Sat and Sun, 00:00 UTC


def test_arguments_are_checked_before_any_request(
    sim: PolygonSimulator, client: PolygonClient
) -> None:
    with pytest.raises(ValueError, match="timespan must be one of"):
        client.aggregates("AAPL", 1, "fortnight", date(2024, 7, 1), date(2024, 7, 5))
    with pytest.raises(ValueError, match="multiplier must be at least 1"):
        client.aggregates("AAPL", 0, "day", date(2024, 7, 1), date(2024, 7, 5))
    with pytest.raises(ValueError, match="limit must be between 1 and 50000"):
        client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5), limit=50_001)
    with pytest.raises(ValueError, match="market must be"):
        client.grouped_daily("forex", date(2024, 7, 1))  # type: ignore[arg-type]
    assert sim.requests == []


# ----------------------------------------------------------------------------------------------
# Paging


def test_next_url_is_followed_with_the_bearer_header_until_absent(
    sim: PolygonSimulator, client: PolygonClient
) -> None:
    sim.page_size = 5
    pages = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 31)))

    assert [len(page) for page in pages] == [5, 5, 5, 5, 2]
    sent = sim.requests
    assert len(sent) == client.request_count == 5
    assert all(r.path == "/v2/aggs/ticker/AAPL/range/1/day/2024-07-01/2024-07-31" for r in sent)
    assert all(r.header("Authorization") == f"Bearer {KEY}" for r in sent)
    assert sent[0].query == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    # Follow-ups send the cursor exactly as given, and nothing else: no key, no repeated query.
    assert all(set(r.query) == {"cursor"} for r in sent[1:])

    sim.page_size = 50_000
    whole = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 31)))
    assert [bar for page in pages for bar in page] == whole[0]


def test_pages_arrive_as_they_are_fetched(sim: PolygonSimulator, client: PolygonClient) -> None:
    sim.page_size = 10
    pages = client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 31))
    assert sim.requests == []
    first = next(pages)
    assert len(first) == 10
    assert len(sim.requests) == 1


def test_a_next_url_naming_another_host_is_fetched_from_the_configured_one(
    sim: PolygonSimulator, sleeps: Sleeps
) -> None:
    # Polygon's links may name api.massive.com; the key must only go to the configured host.
    sim.page_size = 10
    session = requests.Session()
    session.headers["Host"] = "api.massive.example"
    with make_client(sim, sleeps, session=session) as client:
        pages = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 31)))
    session.close()

    assert [len(page) for page in pages] == [10, 10, 2]
    # The simulator builds next_url from the Host header, so its links named the other host.
    assert [r.header("Host") for r in sim.requests] == ["api.massive.example"] * 3


def test_grouped_daily_keys_rows_by_the_requested_date(
    sim: PolygonSimulator, client: PolygonClient
) -> None:
    rows = client.grouped_daily("stocks", date(2024, 7, 3))

    [sent] = sim.requests
    assert sent.path == "/v2/aggs/grouped/locale/us/market/stocks/2024-07-03"
    assert sent.query == {"adjusted": "true"}
    assert sent.header("Authorization") == f"Bearer {KEY}"
    raw = sim_json(sim, "/v2/aggs/grouped/locale/us/market/stocks/2024-07-03")["results"]
    assert rows == [
        GroupedBar(
            ticker=row["T"],
            day=date(2024, 7, 3),
            t=row["t"],
            o=row["o"],
            h=row["h"],
            l=row["l"],
            c=row["c"],
            v=row["v"],
            vw=row["vw"],
            n=row["n"],
        )
        for row in raw
    ]
    assert rows[0].t == 1720036800000  # 16:00 New York: not the date's start
    assert rows[0].bar() == PolygonBar(
        rows[0].t, rows[0].o, rows[0].h, rows[0].l, rows[0].c, rows[0].v, rows[0].vw, rows[0].n
    )


def test_grouped_daily_crypto_and_unadjusted(sim: PolygonSimulator, client: PolygonClient) -> None:
    rows = client.grouped_daily("crypto", date(2024, 7, 7), adjusted=False)

    [sent] = sim.requests
    assert sent.path == "/v2/aggs/grouped/locale/global/market/crypto/2024-07-07"
    assert sent.query == {"adjusted": "false"}
    assert [row.ticker for row in rows] == [
        "X:BTCUSD",
        "X:DOGEUSD",
        "X:ETHUSD",
        "X:SOLUSD",
        "X:XRPUSD",
    ]
    assert {row.day for row in rows} == {date(2024, 7, 7)}


def test_splits_since_a_date(sim: PolygonSimulator, client: PolygonClient) -> None:
    sim.add_split("NVDA", date(2024, 6, 10), 1, 10)
    sim.add_split("NVDA", date(2021, 7, 20), 1, 4)
    sim.add_split("NVDA", date(2007, 9, 11), 2, 3)

    splits = client.splits("NVDA", date(2020, 1, 1))

    [sent] = sim.requests
    assert sent.path == "/v3/reference/splits"
    assert sent.query == {
        "ticker": "NVDA",
        "execution_date.gte": "2020-01-01",
        "order": "asc",
        "sort": "execution_date",
        "limit": "1000",
    }
    assert sent.header("Authorization") == f"Bearer {KEY}"
    assert [(s.ticker, s.execution_date, s.split_from, s.split_to) for s in splits] == [
        ("NVDA", date(2021, 7, 20), 1.0, 4.0),
        ("NVDA", date(2024, 6, 10), 1.0, 10.0),
    ]
    assert splits[1].ratio == 10.0
    assert isinstance(splits[0], Split)
    assert splits[0].id is not None


def test_splits_since_for_every_ticker(sim: PolygonSimulator, client: PolygonClient) -> None:
    sim.add_split("TSLA", date(2022, 8, 25), 1, 3)
    sim.add_split("NVDA", date(2024, 6, 10), 1, 10)
    sim.add_split("AAPL", date(2020, 8, 31), 1, 4)

    splits = client.splits_since(date(2021, 1, 1))

    [sent] = sim.requests
    assert sent.query == {
        "execution_date.gte": "2021-01-01",
        "order": "asc",
        "sort": "execution_date",
        "limit": "1000",
    }
    assert [(s.ticker, s.execution_date) for s in splits] == [
        ("TSLA", date(2022, 8, 25)),
        ("NVDA", date(2024, 6, 10)),
    ]


def test_ticker_details_and_existence(sim: PolygonSimulator, client: PolygonClient) -> None:
    details = client.ticker_details("BRK.B")
    assert details is not None
    assert (details["ticker"], details["market"], details["type"]) == ("BRK.B", "stocks", "CS")
    assert client.ticker_details("BRKB") is None
    assert client.ticker_exists("X:BTCUSD") is True
    assert client.ticker_exists("NOPE") is False

    assert [r.path for r in sim.requests] == [
        "/v3/reference/tickers/BRK.B",
        "/v3/reference/tickers/BRKB",
        "/v3/reference/tickers/X:BTCUSD",
        "/v3/reference/tickers/NOPE",
    ]
    assert client.request_count == 4  # a 404 is an answer, not a retry


# ----------------------------------------------------------------------------------------------
# Answers that are still answers


def test_delayed_data_is_accepted(sim: PolygonSimulator, client: PolygonClient) -> None:
    sim.inject_fault("delayed", times=None)
    [bars] = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5)))
    assert len(bars) == 4
    assert len(client.grouped_daily("stocks", date(2024, 7, 3))) == 14


def test_no_results_is_an_empty_list(sim: PolygonSimulator, client: PolygonClient) -> None:
    assert list(client.aggregates("NOPE", 1, "day", date(2024, 7, 1), date(2024, 7, 5))) == [[]]
    assert list(client.aggregates("AAPL", 1, "day", date(2024, 7, 6), date(2024, 7, 7))) == [[]]
    assert client.grouped_daily("stocks", date(2024, 7, 4)) == []
    assert client.splits("AAPL", date(2000, 1, 1)) == []


# ----------------------------------------------------------------------------------------------
# Retries


def test_429_honours_retry_after(
    sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps
) -> None:
    sim.inject_fault("rate_limit", ticker="AAPL", times=2, retry_after=3)
    [bars] = list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5)))

    assert len(bars) == 4
    assert sleeps == [3.0, 3.0]
    assert client.request_count == 3
    assert [r.path for r in sim.requests] == [AAPL_WEEK] * 3


def test_429_without_retry_after_backs_off_exponentially(
    sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps
) -> None:
    sim.inject_fault("rate_limit", times=2, retry_after=None)
    list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5)))
    assert sleeps == [0.5, 1.0]
    assert client.request_count == 3


def test_retry_after_is_capped(sim: PolygonSimulator, sleeps: Sleeps) -> None:
    sim.inject_fault("rate_limit", retry_after=3600)
    with make_client(sim, sleeps, max_backoff=20.0) as client:
        assert client.ticker_exists("AAPL") is True
    assert sleeps == [20.0]


def test_500_is_retried(sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps) -> None:
    sim.inject_fault("server_error", times=1)
    sim.inject_fault("server_error", times=1, status=503)
    assert client.ticker_exists("AAPL") is True
    assert sleeps == [0.5, 1.0]
    assert client.request_count == 3


def test_backoff_jitter_stays_small(sim: PolygonSimulator, sleeps: Sleeps) -> None:
    sim.inject_fault("server_error", times=3)
    with make_client(sim, sleeps, max_retries=3, jitter=0.1, backoff_base=1.0) as client:
        client.ticker_exists("AAPL")
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 2**attempt <= slept <= 2**attempt * 1.1


def test_exhausted_retries_raise_unavailable(
    sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps
) -> None:
    sim.inject_fault("server_error", times=None)
    with pytest.raises(PolygonUnavailable) as caught:
        list(client.aggregates("AAPL", 1, "day", date(2024, 7, 1), date(2024, 7, 5)))

    assert (
        str(caught.value) == f"GET {AAPL_WEEK}: gave up after 3 attempts; last: 500: Internal error"
    )
    assert caught.value.status == 500
    assert caught.value.path == AAPL_WEEK
    assert sleeps == [0.5, 1.0]  # no wait after the last attempt
    assert client.request_count == 3


def test_a_slow_answer_times_out_and_is_retried(sim: PolygonSimulator, sleeps: Sleeps) -> None:
    # The retry's normal answer has the whole 1.5 s timeout; the slow one sleeps twice as long.
    sim.inject_fault("slow", times=1, seconds=3.0)
    with make_client(sim, sleeps, timeout=1.5) as client:
        assert client.ticker_exists("AAPL") is True
        assert client.request_count == 2
    assert sleeps == [0.5]


def test_answers_that_never_come_in_time_raise_unavailable(
    sim: PolygonSimulator, sleeps: Sleeps
) -> None:
    sim.inject_fault("slow", times=None, seconds=2.0)
    with make_client(sim, sleeps, timeout=0.5, max_retries=1) as client:
        with pytest.raises(PolygonUnavailable) as caught:
            client.ticker_details("AAPL")
    assert str(caught.value) == (
        "GET /v3/reference/tickers/AAPL: gave up after 2 attempts; last: no answer within 0.5s"
    )
    assert caught.value.status is None


def test_a_refused_connection_is_retried_then_unavailable(sleeps: Sleeps) -> None:
    closed = PolygonSimulator().start()
    url = closed.url
    closed.stop()

    with PolygonClient(url, KEY, max_retries=2, jitter=0.0, sleep=sleeps) as client:
        with pytest.raises(PolygonUnavailable) as caught:
            client.grouped_daily("stocks", date(2024, 7, 3))

    assert str(caught.value) == (
        "GET /v2/aggs/grouped/locale/us/market/stocks/2024-07-03: gave up after 3 attempts; "
        "last: connection failed (ConnectionError)"
    )
    assert sleeps == [0.5, 1.0]
    assert client.request_count == 3


# ----------------------------------------------------------------------------------------------
# Failures that are not retried


def test_401_is_not_retried(sim: PolygonSimulator, sleeps: Sleeps) -> None:
    with PolygonClient(sim.url, "pk-wrong-key", sleep=sleeps) as client:
        with pytest.raises(PolygonAuthError) as caught:
            client.ticker_details("AAPL")
    assert str(caught.value) == (
        "GET /v3/reference/tickers/AAPL: 401 the API key was rejected: Unknown API Key"
    )
    assert caught.value.status == 401
    assert client.request_count == 1
    assert sleeps == []
    assert "pk-wrong-key" not in str(caught.value)


def test_403_is_not_retried(sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps) -> None:
    sim.inject_fault("forbidden", ticker="AAPL")
    with pytest.raises(PolygonNotAuthorized) as caught:
        list(client.aggregates("AAPL", 1, "minute", date(2004, 1, 2), date(2004, 1, 2)))
    assert str(caught.value).startswith(
        "GET /v2/aggs/ticker/AAPL/range/1/minute/2004-01-02/2004-01-02: 403 not included in the "
        "plan: You are not entitled to this data."
    )
    assert caught.value.status == 403
    assert client.request_count == 1
    assert sleeps == []


def test_malformed_json_is_a_bad_response(
    sim: PolygonSimulator, client: PolygonClient, sleeps: Sleeps
) -> None:
    sim.inject_fault("malformed_json")
    with pytest.raises(PolygonBadResponse) as caught:
        client.grouped_daily("stocks", date(2024, 7, 3))
    assert str(caught.value).startswith(
        "GET /v2/aggs/grouped/locale/us/market/stocks/2024-07-03: unreadable answer"
    )
    assert client.request_count == 1
    assert sleeps == []


class _CannedSession(requests.Session):
    """Answers every request with one fixed 200 body."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = requests.Response()
        response.status_code = 200
        response._content = self.body
        return response


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"status":"ERROR","request_id":"x"}', "status 'ERROR'"),
        (b'{"status":"OK","results":[{"o":1}]}', "unreadable answer (Object missing required"),
        (b'["not", "an", "object"]', "unreadable answer (Expected `object`, got `array`)"),
    ],
)
def test_answers_of_the_wrong_shape_are_bad_responses(body: bytes, message: str) -> None:
    with PolygonClient("https://api.polygon.example", KEY, session=_CannedSession(body)) as client:
        with pytest.raises(PolygonBadResponse) as caught:
            client.grouped_daily("stocks", date(2024, 7, 3))
    assert message in str(caught.value)
    assert client.request_count == 1


def test_other_client_errors_are_not_retried(sim: PolygonSimulator, client: PolygonClient) -> None:
    # The simulator does not serve second bars and answers 400, as Polygon does for bad input.
    with pytest.raises(PolygonError) as caught:
        list(client.aggregates("AAPL", 1, "second", date(2024, 7, 1), date(2024, 7, 1)))
    assert type(caught.value) is PolygonError
    assert caught.value.status == 400
    assert str(caught.value).startswith(
        "GET /v2/aggs/ticker/AAPL/range/1/second/2024-07-01/2024-07-01: 400: the simulator serves"
    )
    assert client.request_count == 1


def test_every_error_is_a_polygon_error() -> None:
    for error in (PolygonAuthError, PolygonNotAuthorized, PolygonUnavailable, PolygonBadResponse):
        assert issubclass(error, PolygonError)
    assert issubclass(PolygonError, Exception)


# ----------------------------------------------------------------------------------------------
# The key stays secret


class _EchoingSession(requests.Session):
    """A provider that quotes the key back in its error text, as a misbehaving proxy might."""

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = requests.Response()
        response.status_code = 502
        response._content = (
            b'{"status":"ERROR","error":"upstream refused '
            + f"https://x/?apiKey={KEY}&a=1 with key {KEY}".encode()
            + b'"}'
        )
        return response


def test_the_key_never_appears_in_errors(sim: PolygonSimulator, sleeps: Sleeps) -> None:
    with PolygonClient(
        "https://api.polygon.example", KEY, session=_EchoingSession(), sleep=sleeps, max_retries=1
    ) as client:
        with pytest.raises(PolygonUnavailable) as caught:
            client.ticker_details("AAPL")
    message = str(caught.value)
    assert KEY not in message
    assert message == (
        "GET /v3/reference/tickers/AAPL: gave up after 2 attempts; last: 502: upstream refused "
        "https://x/?apiKey=***&a=1 with key ***"
    )
    assert KEY not in repr(client)

    sim.inject_fault("malformed_json")
    sim.inject_fault("forbidden")
    sim.inject_fault("server_error", times=None)
    with make_client(sim, sleeps) as client:
        for _ in range(3):
            with pytest.raises(PolygonError) as failure:
                client.ticker_details("AAPL")
            assert KEY not in str(failure.value)
            assert KEY not in repr(failure.value)


# ----------------------------------------------------------------------------------------------
# Pacing


def test_pacing_keeps_requests_within_the_rolling_minute(sim: PolygonSimulator) -> None:
    fake = FakeClock()
    with PolygonClient(sim.url, KEY, max_rpm=2, sleep=fake.sleep, clock=fake) as client:
        client.ticker_exists("AAPL")  # t = 1000
        fake.now += 10
        client.ticker_exists("AAPL")  # t = 1010
        fake.now += 10
        client.ticker_exists("AAPL")  # t = 1020: must wait until 1060
        client.ticker_exists("AAPL")  # t = 1060: must wait until 1070
        fake.now += 100
        client.ticker_exists("AAPL")  # t = 1170: the window is empty again

    assert fake.sleeps == [40.0, 10.0]
    assert client.request_count == 5
    assert len(sim.requests) == 5


def test_no_pacing_without_max_rpm(sim: PolygonSimulator) -> None:
    fake = FakeClock()
    with PolygonClient(sim.url, KEY, sleep=fake.sleep, clock=fake) as client:
        for _ in range(10):
            client.ticker_exists("AAPL")
    assert fake.sleeps == []


# ----------------------------------------------------------------------------------------------
# Construction


def test_from_settings_reads_the_polygon_settings(sim: PolygonSimulator) -> None:
    settings = Settings.from_env(
        {
            "POLYGON_API_KEY": KEY,
            "POLYGON_BASE_URL": sim.url + "/",
            "POLYGON_MAX_RPM": "5",
            "POLYGON_TIMEOUT_SECONDS": "2.5",
        }
    )
    with PolygonClient.from_settings(settings, max_retries=1) as client:
        assert (client.base_url, client.timeout, client.max_rpm, client.max_retries) == (
            sim.url,
            2.5,
            5,
            1,
        )
        assert client.ticker_exists("AAPL") is True
    assert sim.requests[0].header("Authorization") == f"Bearer {KEY}"


def test_from_settings_without_a_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no Polygon API key"):
        PolygonClient.from_settings(Settings.from_env({}))


def test_importing_the_client_does_not_import_requests() -> None:
    probe = "import sys, chalicelib.polygon; print('requests' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
