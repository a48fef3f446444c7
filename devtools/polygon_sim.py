"""A Polygon.io look-alike on a real local port, for tests, benchmarks and `make run`.

It answers the endpoints the warehouse uses, in the shapes of Polygon's OpenAPI spec:

    /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}
    /v2/aggs/grouped/locale/us/market/stocks/{date}
    /v2/aggs/grouped/locale/global/market/crypto/{date}
    /v3/reference/splits
    /v3/reference/tickers/{ticker}

Prices are invented but deterministic: each ticker has its own random walk seeded from its
name, so the same request always returns the same bars. By default only the core universe
(DEFAULT_STOCKS, DEFAULT_CRYPTO) and tickers added with `add_ticker` exist, and their history is
clean, so tests can pin exact values.

With `accept_any_ticker` (as `make run` starts it) the simulator is a whole local market: any
well-formed stock ticker (IBM, BRK.A) or crypto pair (X:AVAXUSD) exists except those in
UNKNOWN_TICKERS, which answer as Polygon does for a ticker it does not know (404 on details,
resultsCount 0 on aggregates). Its history then has what real data has: about one ticker in four
outside the core universe has a split (listed in /v3/reference/splits once the ticker has been
asked about), and every ticker has a few flawed daily bars a year and a session now and then
with no data at all (see `imperfections`), so validation flags, gaps and the validation rate
show up locally. Stocks trade on NYSE sessions only
(daily bars stamped at midnight New York time, intraday bars built from the minutes of
09:30-16:00, or 09:30-13:00 on NYSE's early closes, and snapped to the clock as Polygon's are: an
hour bar starts at the top of the hour); crypto trades every day around the clock (daily bars
stamped at 00:00 UTC). Bars start on 1990-01-01 and stop at the simulated present.

Tests drive it through `inject_fault` (429s, 500s, slow answers, malformed JSON, 401, 403,
DELAYED data), `add_split` and the request log in `requests`:

    with PolygonSimulator(api_key="test-key", page_size=100) as sim:
        client = PolygonClient(sim.url, "test-key")
        sim.inject_fault("rate_limit", ticker="AAPL", times=2, retry_after=1)
        ...
        assert sim.requests[-1].path == "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-31"

From a shell: `python -m devtools.polygon_sim --port 8081 [--page-size N]`.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import math
import random
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple, get_args
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import msgspec

from chalicelib.market.calendar import (
    NEW_YORK,
    SESSION_CLOSE,
    is_trading_day,
    session_bounds_utc,
)

FaultKind = Literal[
    "rate_limit",  # 429; option retry_after (seconds, default 1; None sends no Retry-After)
    "server_error",  # 500; option status (any 5xx)
    "slow",  # the normal answer after `seconds` (required option)
    "malformed_json",  # 200 with a truncated JSON body
    "unauthorized",  # 401 "Unknown API Key"
    "forbidden",  # 403 NOT_AUTHORIZED (a plan limit)
    "delayed",  # the normal answer with status "DELAYED"
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_FAULT_OPTIONS: dict[str, frozenset[str]] = {
    "rate_limit": frozenset({"retry_after"}),
    "server_error": frozenset({"status"}),
    "slow": frozenset({"seconds"}),
}

DEFAULT_STOCKS: dict[str, tuple[str, str]] = {
    # ticker: (name, Polygon ticker type)
    "AAPL": ("Apple Inc.", "CS"),
    "MSFT": ("Microsoft Corp", "CS"),
    "GOOGL": ("Alphabet Inc. Class A", "CS"),
    "AMZN": ("Amazon.com, Inc.", "CS"),
    "NVDA": ("Nvidia Corp", "CS"),
    "META": ("Meta Platforms, Inc. Class A", "CS"),
    "TSLA": ("Tesla, Inc.", "CS"),
    "BRK.B": ("Berkshire Hathaway Inc. Class B", "CS"),
    "JPM": ("JPMorgan Chase & Co.", "CS"),
    "V": ("Visa Inc. Class A", "CS"),
    "SPY": ("SPDR S&P 500 ETF Trust", "ETF"),
    "QQQ": ("Invesco QQQ Trust, Series 1", "ETF"),
    "IWM": ("iShares Russell 2000 ETF", "ETF"),
    "DIA": ("SPDR Dow Jones Industrial Average ETF Trust", "ETF"),
}
DEFAULT_CRYPTO: dict[str, str] = {
    "X:BTCUSD": "Bitcoin - United States Dollar",
    "X:ETHUSD": "Ethereum - United States Dollar",
    "X:SOLUSD": "Solana - United States Dollar",
    "X:XRPUSD": "XRP - United States Dollar",
    "X:DOGEUSD": "Dogecoin - United States Dollar",
}

UNKNOWN_TICKERS: frozenset[str] = frozenset({"NOSUCH", "XXXX", "UNKNWN", "X:NOSUCHUSD"})
"""Well-formed tickers that Polygon-in-any-ticker-mode does not know, to show the unknown path."""

HISTORY_START = date(1990, 1, 1)
MAX_LIMIT = 50_000  # Polygon's own cap on `limit`
DEFAULT_LIMIT = 5_000  # Polygon's default `limit`
TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")

_STOCK_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z]{1,2})?$")
_CRYPTO_TICKER = re.compile(r"^X:[A-Z0-9]{2,12}USD$")
_AGGS_PATH = re.compile(
    r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<multiplier>[^/]+)/(?P<timespan>[^/]+)"
    r"/(?P<start>[^/]+)/(?P<end>[^/]+)$"
)
_GROUPED_PATH = re.compile(
    r"^/v2/aggs/grouped/locale/(?:us/market/(?P<stocks>stocks)|global/market/(?P<crypto>crypto))"
    r"/(?P<day>[^/]+)$"
)
_TICKER_DETAILS_PATH = re.compile(r"^/v3/reference/tickers/(?P<ticker>[^/]+)$")
_SPLITS_PATH = "/v3/reference/splits"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_MS_PER_MINUTE = 60_000
_MS_PER_DAY = 86_400_000
_EPOCH = date(1970, 1, 1)


# ----------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator received it. `query` keeps the last value of each name."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    target: str

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@dataclass(slots=True)
class Fault:
    """A misbehaviour applied to the next `remaining` matching requests (None: until cleared)."""

    kind: str
    ticker: str | None
    remaining: int | None
    options: dict[str, Any]

    def matches(self, ticker: str | None) -> bool:
        return self.ticker is None or self.ticker == ticker


@dataclass(frozen=True, slots=True)
class SimulatedSplit:
    ticker: str
    execution_date: date
    split_from: float
    split_to: float

    @property
    def id(self) -> str:
        digest = hashlib.sha256(f"{self.ticker}|{self.execution_date}".encode()).hexdigest()
        return f"E{digest[:63]}"

    @property
    def ratio(self) -> float:
        """Shares after per share before: 4.0 for a 4-for-1 split."""
        return self.split_to / self.split_from


@dataclass(frozen=True, slots=True)
class _TickerInfo:
    ticker: str
    name: str
    market: Literal["stocks", "crypto"]
    ticker_type: str | None


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


class _BadRequest(Exception):
    """A parameter Polygon would reject with 400."""


# ----------------------------------------------------------------------------------------------
# Deterministic prices
#
# Each ticker has a log-price level per calendar year (a mean-reverting walk, so prices stay
# positive and plausible over decades) and, inside each year, a daily random walk pinned at both
# ends to those levels. A year is generated on its own from its own seed, so a request for five
# years costs five years of work however far they are from the walk's anchor, and the result is
# the same whatever range was asked for first.


class _Bar(NamedTuple):
    """A stamped bar before formatting (rounding happens only on the way out)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float
    n: int


class _Ohlcv(NamedTuple):
    """A bar not yet stamped: the minutes of a day get their times from the window asked for."""

    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float
    n: int


_ANCHOR_YEAR = 2000


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts`: the same on every run and machine."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _is_crypto(ticker: str) -> bool:
    return ticker.startswith("X:")


def _log_uniform(low: float, high: float, unit: float) -> float:
    return math.exp(math.log(low) + (math.log(high) - math.log(low)) * unit)


# Rough price levels for the default universe, so that `make run` shows familiar magnitudes;
# other tickers get a level derived from their name.
_BASE_PRICES = {
    "AAPL": 150.0,
    "MSFT": 300.0,
    "GOOGL": 120.0,
    "AMZN": 130.0,
    "NVDA": 90.0,
    "META": 300.0,
    "TSLA": 200.0,
    "BRK.B": 350.0,
    "JPM": 150.0,
    "V": 230.0,
    "SPY": 450.0,
    "QQQ": 380.0,
    "IWM": 190.0,
    "DIA": 350.0,
    "X:BTCUSD": 40_000.0,
    "X:ETHUSD": 2_500.0,
    "X:SOLUSD": 100.0,
    "X:XRPUSD": 0.6,
    "X:DOGEUSD": 0.1,
}


@lru_cache(maxsize=4096)
def _profile(ticker: str) -> tuple[float, float, float, float]:
    """(base log price, daily volatility, base daily volume, average trade size) of a ticker."""
    known_price = _BASE_PRICES.get(ticker)
    if _is_crypto(ticker):
        base_price = known_price or _log_uniform(0.05, 50_000.0, _unit(ticker, "price"))
        volume = _log_uniform(2_000.0, 5_000_000.0, _unit(ticker, "volume")) / math.sqrt(base_price)
        return math.log(base_price), 0.035, volume, volume / 40_000
    base_price = known_price or _log_uniform(15.0, 400.0, _unit(ticker, "price"))
    volume = _log_uniform(500_000.0, 80_000_000.0, _unit(ticker, "volume"))
    return math.log(base_price), 0.018, volume, 150.0


@lru_cache(maxsize=65_536)
def _year_level(ticker: str, year: int) -> float:
    """Log price on 1 January of `year`: a mean-reverting yearly walk from the anchor year."""
    base, _, _, _ = _profile(ticker)

    def step(level: float, from_year: int) -> float:
        shock = random.Random(f"year|{ticker}|{from_year}").gauss(0.04, 0.3)
        return -0.2 * (level - base) + shock

    level = base
    for walked in range(_ANCHOR_YEAR, year):
        level += step(level, walked)
    # Before the anchor, walk backwards with the same shocks (without reversion: it only has to
    # be deterministic and continuous).
    for walked in range(_ANCHOR_YEAR - 1, year - 1, -1):
        level -= random.Random(f"year|{ticker}|{walked}").gauss(0.04, 0.3)
    return level


class _DailyYear(NamedTuple):
    """A year of daily bars of one ticker in time order (`days[i]` is the date of `bars[i]`)."""

    days: tuple[date, ...]
    bars: tuple[_Bar, ...]


@lru_cache(maxsize=4_096)
def _daily_year(ticker: str, year: int) -> _DailyYear:
    """Daily bars of `year`: every day for crypto, NYSE sessions for stocks. The walk itself
    moves on every calendar day, so a Monday opens away from Friday's close."""
    _, volatility, base_volume, trade_size = _profile(ticker)
    crypto = _is_crypto(ticker)
    rng = random.Random(f"days|{ticker}|{year}")
    draw = rng.random
    first = date(year, 1, 1)
    length = (date(year + 1, 1, 1) - first).days
    start_level = _year_level(ticker, year)
    end_level = _year_level(ticker, year + 1)
    # Uniform steps of this half-width have the daily volatility as their standard deviation.
    half_width = volatility * math.sqrt(3.0)

    walk = [0.0]
    for _ in range(length):
        walk.append(walk[-1] + (2.0 * draw() - 1.0) * half_width)
    # Pin the walk to next year's level, spreading the difference evenly (a Brownian bridge).
    correction = (walk[-1] - (end_level - start_level)) / length
    levels = [start_level + value - index * correction for index, value in enumerate(walk)]

    days: list[date] = []
    bars: list[_Bar] = []
    for index in range(length):
        day = first + timedelta(days=index)
        if not crypto and not is_trading_day(day):
            continue
        open_ = math.exp(levels[index] + (2.0 * draw() - 1.0) * half_width * 0.3)
        close = math.exp(levels[index + 1])
        high = max(open_, close) * math.exp(draw() * half_width * 0.6)
        low = min(open_, close) * math.exp(-draw() * half_width * 0.6)
        volume = base_volume * math.exp((2.0 * draw() - 1.0) * 0.7)
        if not crypto:
            volume = float(round(volume))
        trades = max(1, round(volume / trade_size))
        vwap = (high + low + close) / 3.0
        days.append(day)
        bars.append(
            _Bar(_midnight_ms(day, crypto=crypto), open_, high, low, close, volume, vwap, trades)
        )
    return _DailyYear(tuple(days), tuple(bars))


def _day_of(ticker: str, day: date) -> _Bar:
    """The daily bar of a session (stocks) or of a day (crypto)."""
    series = _daily_year(ticker, day.year)
    index = bisect.bisect_left(series.days, day)
    if index == len(series.days) or series.days[index] != day:
        raise KeyError(f"{ticker} has no session on {day}")
    return series.bars[index]


# ----------------------------------------------------------------------------------------------
# Imperfections of a local market (accept_any_ticker only)
#
# Real feeds have splits, bad prints and days without data. The local market adds them from each
# ticker's name, so `make run` shows flags, gaps and the validation rate while every answer stays
# deterministic. Flaws touch daily bars only: intraday bars are derived from a clean day.

FlawKind = Literal["ohlc_inconsistent", "bad_print", "volume_spike"]


class Imperfections(NamedTuple):
    """What the local market does to one year of one ticker's daily bars."""

    missing: frozenset[date]
    """Sessions (days, for crypto) without any bar, at any timeframe."""
    flawed: dict[date, FlawKind]
    """Daily bars delivered wrong: `ohlc_inconsistent` (the high below the close; a severe flag),
    `bad_print` (the close half as high again, back the next day; a price jump), `volume_spike`
    (volume twenty-fold; a volume spike)."""


_FLAW_KINDS: tuple[FlawKind, ...] = get_args(FlawKind)


@lru_cache(maxsize=4_096)
def imperfections(ticker: str, year: int) -> Imperfections:
    """The missing sessions (0 to 2) and flawed daily bars (1 to 3) of a ticker's year."""
    days = _daily_year(ticker, year).days
    if len(days) < 10:
        return Imperfections(frozenset(), {})
    rng = random.Random(f"imperfections|{ticker}|{year}")
    # Away from the first and last days of the year, so a flaw never sits next to a year edge
    # where the other half of a bad print would be out of sight.
    chosen = rng.sample(days[2:-2], 5)
    missing = frozenset(chosen[: rng.randint(0, 2)])
    flawed = {day: rng.choice(_FLAW_KINDS) for day in chosen[2 : 2 + rng.randint(1, 3)]}
    return Imperfections(missing, flawed)


def _flawed(bar: _Bar, kind: FlawKind) -> _Bar:
    if kind == "ohlc_inconsistent":
        return bar._replace(h=min(bar.o, bar.c) * 0.99)
    if kind == "bad_print":
        close = bar.c * 1.5
        return bar._replace(c=close, h=max(bar.h, close))
    return bar._replace(v=bar.v * 20)


@lru_cache(maxsize=65_536)
def derived_split(ticker: str) -> SimulatedSplit | None:
    """The one split of about a quarter of the tickers outside the core universe: 2-, 3- or
    4-for-1, or a 1-for-10 reverse split, on a session between 2005 and 2023."""
    if ticker in _BASE_PRICES or _is_crypto(ticker) or _unit(ticker, "split") >= 0.25:
        return None
    ratios = ((1.0, 2.0), (1.0, 3.0), (1.0, 4.0), (10.0, 1.0))
    split_from, split_to = ratios[int(_unit(ticker, "split ratio") * len(ratios))]
    day = date(2005, 1, 1) + timedelta(days=int(_unit(ticker, "split day") * 19 * 365))
    while not is_trading_day(day):
        day += timedelta(days=1)
    return SimulatedSplit(ticker, day, split_from, split_to)


# Small: a day of crypto minutes is ~1,440 tuples; paging through a long minute range
# regenerates the days that fell out, which costs about a millisecond each.
@lru_cache(maxsize=128)
def _minutes_of_day(ticker: str, day: date, minutes: int) -> tuple[_Ohlcv, ...]:
    """`minutes` one-minute bars that run from the day's open to its close, inside its range."""
    daily = _day_of(ticker, day)
    _, volatility, _, _ = _profile(ticker)
    rng = random.Random(f"minutes|{ticker}|{day.isoformat()}")
    draw = rng.random
    half_width = volatility * math.sqrt(3.0) / math.sqrt(minutes) * 2.0
    low_level, high_level = math.log(daily.l), math.log(daily.h)
    open_level, close_level = math.log(daily.o), math.log(daily.c)

    walk = [0.0]
    for _ in range(minutes):
        walk.append(walk[-1] + (2.0 * draw() - 1.0) * half_width)
    correction = (walk[-1] - (close_level - open_level)) / minutes
    path = [
        math.exp(min(high_level, max(low_level, open_level + value - index * correction)))
        for index, value in enumerate(walk)
    ]
    weights = [0.5 + draw() for _ in range(minutes)]
    total_weight = sum(weights)
    crypto = _is_crypto(ticker)

    result: list[_Ohlcv] = []
    for index in range(minutes):
        open_, close = path[index], path[index + 1]
        high = min(daily.h, max(open_, close) * math.exp(draw() * half_width * 0.5))
        low = max(daily.l, min(open_, close) * math.exp(-draw() * half_width * 0.5))
        volume = daily.v * weights[index] / total_weight
        if not crypto:
            volume = float(max(1, round(volume)))
        trades = max(1, round(daily.n * weights[index] / total_weight))
        result.append(_Ohlcv(open_, high, low, close, volume, (high + low + close) / 3.0, trades))
    return tuple(result)


def _merge(t: int, parts: list[_Bar]) -> _Bar:
    volume = sum(part.v for part in parts)
    vwap = (
        sum(part.vw * part.v for part in parts) / volume
        if volume > 0
        else sum(part.vw for part in parts) / len(parts)
    )
    return _Bar(
        t=t,
        o=parts[0].o,
        h=max(part.h for part in parts),
        l=min(part.l for part in parts),
        c=parts[-1].c,
        v=volume,
        vw=vwap,
        n=sum(part.n for part in parts),
    )


def _midnight_ms(day: date, *, crypto: bool) -> int:
    """Start of `day` in the market's time zone (New York for stocks, UTC for crypto), in ms."""
    utc_midnight = (day - _EPOCH).days * _MS_PER_DAY
    if crypto:
        return utc_midnight
    # Midnight is never inside a New York clock change (they happen at 02:00), so the offset of
    # the naive local midnight is unambiguous.
    offset = NEW_YORK.utcoffset(datetime(day.year, day.month, day.day))
    assert offset is not None
    return utc_midnight - int(offset.total_seconds()) * 1000


def _market_date(ms: int, *, crypto: bool) -> date:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.date() if crypto else moment.astimezone(NEW_YORK).date()


def _scale(bar: _Ohlcv | _Bar, t: int, divisor: float) -> _Bar:
    """Re-express a bar per post-split share: prices divided, volume multiplied."""
    if divisor == 1.0:
        return _Bar(t, bar.o, bar.h, bar.l, bar.c, bar.v, bar.vw, bar.n)
    return _Bar(
        t,
        bar.o / divisor,
        bar.h / divisor,
        bar.l / divisor,
        bar.c / divisor,
        bar.v * divisor,
        bar.vw / divisor,
        bar.n,
    )


def _split_divisor(splits: list[SimulatedSplit], day: date, *, adjusted: bool) -> float:
    """What a price on `day` is divided by. Unadjusted prices drop at each split's execution
    date, as traded prices do; adjusted prices are expressed in today's shares throughout."""
    divisor = 1.0
    for split in splits:
        if adjusted or split.execution_date <= day:
            divisor *= split.ratio
    return divisor


@lru_cache(maxsize=131_072)
def _row_json(bar: _Bar, crypto: bool) -> bytes:
    """A result row as JSON, kept: repeated requests (benchmarks, paging) re-send the same bars,
    and formatting them is most of the cost of an answer."""
    if crypto:
        # Keep about seven significant digits, from BTC (2 decimals) to sub-cent coins.
        places = min(10, max(2, 6 - math.floor(math.log10(bar.c))))
        volume = f"{bar.v:.8f}"
    else:
        places = 4
        volume = f"{round(bar.v)}"
    # One precision for the whole bar: correctly rounded formatting is monotonic, so
    # low <= open, close <= high survives it. Format specifiers are several times faster than
    # round() and repr(), and this is the hot path of every answer.
    return (
        f'{{"v":{volume},"vw":{bar.vw:.{places}f},"o":{bar.o:.{places}f},'
        f'"c":{bar.c:.{places}f},"h":{bar.h:.{places}f},"l":{bar.l:.{places}f},'
        f'"t":{bar.t},"n":{bar.n}}}'
    ).encode()


# ----------------------------------------------------------------------------------------------
# The simulator


class PolygonSimulator:
    """A Polygon-compatible HTTP server on a background thread.

    `tickers` replaces the default universe (provider tickers: "AAPL", "X:BTCUSD");
    `accept_any_ticker` makes it a whole local market (as `make run` uses it): any well-formed
    ticker (SYM0001, X:FOOUSD) but UNKNOWN_TICKERS, with derived splits, flawed bars and missing
    sessions (see the module docstring);
    `page_size` caps results per page below the request's `limit`, so paging shows up on small
    ranges; `now` is the simulated present (bars after it do not exist yet; default: the real
    clock); `api_key` makes every request prove it with `Authorization: Bearer` or `apiKey`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        page_size: int = MAX_LIMIT,
        tickers: Iterable[str] | None = None,
        accept_any_ticker: bool = False,
        now: datetime | None = None,
        verbose: bool = False,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.page_size = page_size
        self.accept_any_ticker = accept_any_ticker
        self.now = now
        self.verbose = verbose
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._splits: list[SimulatedSplit] = []
        self._tickers: dict[str, _TickerInfo] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        if tickers is None:
            for ticker, (name, ticker_type) in DEFAULT_STOCKS.items():
                self.add_ticker(ticker, name=name, ticker_type=ticker_type)
            for ticker, name in DEFAULT_CRYPTO.items():
                self.add_ticker(ticker, name=name)
        else:
            for ticker in tickers:
                self.add_ticker(ticker)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PolygonSimulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"polygon-sim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, so clients see a closed port at once."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> PolygonSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (the bound port once started)."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    # -- universe and splits -------------------------------------------------------------------

    def add_ticker(
        self, ticker: str, *, name: str | None = None, ticker_type: str | None = None
    ) -> None:
        """Serve `ticker` (a provider ticker: "X:...USD" is crypto, anything else a stock)."""
        if _is_crypto(ticker):
            info = _TickerInfo(
                ticker, name or f"{ticker[2:-3]} - United States Dollar", "crypto", None
            )
        else:
            info = _TickerInfo(
                ticker, name or f"{ticker} Holdings Inc.", "stocks", ticker_type or "CS"
            )
        with self._lock:
            self._tickers[ticker] = info

    @property
    def tickers(self) -> list[str]:
        with self._lock:
            return sorted(self._tickers)

    def add_split(
        self, ticker: str, execution_date: date, split_from: float, split_to: float
    ) -> SimulatedSplit:
        """Record a split. It appears in /v3/reference/splits; unadjusted prices drop by the
        ratio from `execution_date` on, and adjusted prices everywhere are re-expressed in
        post-split shares, so earlier adjusted prices change as they do at Polygon."""
        if split_from <= 0 or split_to <= 0:
            raise ValueError("split_from and split_to must be positive")
        split = SimulatedSplit(ticker, execution_date, float(split_from), float(split_to))
        with self._lock:
            self._splits.append(split)
        return split

    def clear_splits(self) -> None:
        with self._lock:
            self._splits.clear()

    # -- faults --------------------------------------------------------------------------------

    def inject_fault(
        self,
        kind: FaultKind,
        ticker: str | None = None,
        times: int | None = 1,
        **options: Any,
    ) -> Fault:
        """Misbehave on the next `times` requests about `ticker` (a provider ticker; None: every
        request). Faults apply first-injected first, one per request. Returns the fault, whose
        `remaining` counts down."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        unexpected = set(options) - _FAULT_OPTIONS.get(kind, frozenset())
        if unexpected:
            raise TypeError(f"fault {kind!r} takes no option(s) {sorted(unexpected)}")
        if kind == "slow" and "seconds" not in options:
            raise TypeError("fault 'slow' needs seconds=...")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for until cleared")
        fault = Fault(kind, ticker, times, dict(options))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def _take_fault(self, ticker: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(ticker):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # -- request log ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the start or the last `clear_log()`, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- answering -----------------------------------------------------------------------------

    def _respond(self, method: str, target: str, headers: Mapping[str, str]) -> _Response:
        """The answer to one request; the HTTP layer only transports it."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            self._log.append(RecordedRequest(method, path, query, dict(headers), target))
        request_id = uuid.uuid4().hex

        if self.api_key is not None and not self._authenticated(headers, query):
            return _error(401, request_id, error="Unknown API Key")
        if method != "GET":
            return _error(405, request_id, error=f"method {method} is not allowed")

        fault = self._take_fault(_ticker_of(path, query))
        status_text = "OK"
        delay = 0.0
        if fault is not None:
            if fault.kind == "rate_limit":
                retry_after = fault.options.get("retry_after", 1)
                response = _error(
                    429,
                    request_id,
                    error="You've exceeded the maximum requests per minute, please wait or "
                    "upgrade your subscription to continue.",
                )
                if retry_after is not None:
                    response.headers["Retry-After"] = str(retry_after)
                return response
            if fault.kind == "server_error":
                return _error(
                    int(fault.options.get("status", 500)), request_id, error="Internal error"
                )
            if fault.kind == "malformed_json":
                # A body cut off mid-way, as a dropped proxy connection leaves it.
                truncated = b'{"status":"OK","request_id":"%s","results":[{"o":1.0,"h":'
                return _Response(
                    200, truncated % request_id.encode(), {"Content-Type": "application/json"}
                )
            if fault.kind == "unauthorized":
                return _error(401, request_id, error="Unknown API Key")
            if fault.kind == "forbidden":
                return _error(
                    403,
                    request_id,
                    status="NOT_AUTHORIZED",
                    message="You are not entitled to this data. Please upgrade your plan at "
                    "https://polygon.io/pricing",
                )
            if fault.kind == "delayed":
                status_text = "DELAYED"
            if fault.kind == "slow":
                delay = float(fault.options["seconds"])

        base_url = f"http://{headers.get('Host') or headers.get('host') or self._host_port()}"
        try:
            response = self._route(path, query, request_id, status_text, base_url)
        except _BadRequest as exc:
            response = _error(400, request_id, error=str(exc))
        response.delay_seconds = delay
        return response

    def _host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def _authenticated(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        authorization = next(
            (value for name, value in headers.items() if name.lower() == "authorization"), ""
        )
        return authorization == f"Bearer {self.api_key}" or query.get("apiKey") == self.api_key

    def _route(
        self, path: str, query: dict[str, str], request_id: str, status: str, base_url: str
    ) -> _Response:
        if "cursor" in query:
            query, offset = _decode_cursor(query["cursor"])
        else:
            offset = 0
        if match := _AGGS_PATH.match(path):
            return self._aggregates(match, path, query, offset, request_id, status, base_url)
        if match := _GROUPED_PATH.match(path):
            return self._grouped(match, query, request_id, status)
        if path == _SPLITS_PATH:
            return self._splits_page(path, query, offset, request_id, status, base_url)
        if match := _TICKER_DETAILS_PATH.match(path):
            return self._ticker_details(match["ticker"], request_id, status)
        return _error(404, request_id, status="NOT_FOUND", message=f"no route for {path}")

    def _info(self, ticker: str) -> _TickerInfo | None:
        """The ticker, if it exists. In any-ticker mode a well-formed ticker outside
        UNKNOWN_TICKERS joins the market the first time it is asked about: from then on it is in
        the grouped daily bars, and its derived split (if any) in the splits listing."""
        with self._lock:
            info = self._tickers.get(ticker)
        if info is not None or not self.accept_any_ticker or ticker in UNKNOWN_TICKERS:
            return info
        if not (_CRYPTO_TICKER.match(ticker) or _STOCK_TICKER.match(ticker)):
            return None
        self.add_ticker(ticker)
        if (split := derived_split(ticker)) is not None:
            with self._lock:
                if split not in self._splits:
                    self._splits.append(split)
        with self._lock:
            return self._tickers[ticker]

    def _splits_for(self, ticker: str) -> list[SimulatedSplit]:
        with self._lock:
            return [split for split in self._splits if split.ticker == ticker]

    def _now_ms(self) -> int:
        now = self.now or datetime.now(UTC)
        return int(now.timestamp() * 1000)

    # -- /v2/aggs/ticker -----------------------------------------------------------------------

    def _aggregates(
        self,
        match: re.Match[str],
        path: str,
        query: dict[str, str],
        offset: int,
        request_id: str,
        status: str,
        base_url: str,
    ) -> _Response:
        ticker = match["ticker"]
        multiplier = _positive_int(match["multiplier"], "multiplier")
        timespan = match["timespan"]
        if timespan not in TIMESPANS:
            raise _BadRequest(f"timespan must be one of {', '.join(TIMESPANS)}")
        if timespan in ("second", "month", "quarter", "year") or (
            timespan in ("day", "week") and multiplier != 1
        ):
            raise _BadRequest(
                f"the simulator serves minute and hour multiples, 1/day and 1/week, "
                f"not {multiplier}/{timespan}"
            )
        adjusted = _boolean(query.get("adjusted", "true"), "adjusted")
        sort = query.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise _BadRequest("sort must be asc or desc")
        limit = min(MAX_LIMIT, _positive_int(query.get("limit", str(DEFAULT_LIMIT)), "limit"))

        info = self._info(ticker)
        bars: list[_Bar] = []
        if info is not None:
            crypto = info.market == "crypto"
            low_ms = _bound_ms(match["start"], crypto=crypto, end=False)
            high_ms = min(_bound_ms(match["end"], crypto=crypto, end=True), self._now_ms())
            bars = self._bars(ticker, multiplier, timespan, low_ms, high_ms, adjusted=adjusted)
            if sort == "desc":
                bars.reverse()
        page_length = min(limit, self.page_size)
        page = bars[offset : offset + page_length]
        body: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": adjusted,
        }
        if page:
            crypto = _is_crypto(ticker)
            body["results"] = [msgspec.Raw(_row_json(bar, crypto)) for bar in page]
        body["status"] = status
        body["request_id"] = request_id
        if offset + page_length < len(bars):
            cursor_query = {"adjusted": str(adjusted).lower(), "sort": sort, "limit": str(limit)}
            body["next_url"] = _next_url(base_url, path, cursor_query, offset + page_length)
        return _json(200, body)

    def _bars(
        self,
        ticker: str,
        multiplier: int,
        timespan: str,
        low_ms: int,
        high_ms: int,
        *,
        adjusted: bool,
    ) -> list[_Bar]:
        crypto = _is_crypto(ticker)
        if high_ms < low_ms:
            return []
        first = max(HISTORY_START, _market_date(low_ms, crypto=crypto))
        last = _market_date(high_ms, crypto=crypto)
        splits = self._splits_for(ticker)
        window = multiplier * (60 if timespan == "hour" else 1)
        bars: list[_Bar] = []
        for year in range(first.year, last.year + 1):
            series = _daily_year(ticker, year)
            start = bisect.bisect_left(series.days, first)
            stop = bisect.bisect_right(series.days, last)
            flaws = imperfections(ticker, year) if self.accept_any_ticker else None
            for day, bar in zip(series.days[start:stop], series.bars[start:stop], strict=True):
                if flaws is not None:
                    if day in flaws.missing:
                        continue
                    kind = flaws.flawed.get(day)
                    if kind is not None and timespan in ("day", "week"):
                        bar = _flawed(bar, kind)
                divisor = _split_divisor(splits, day, adjusted=adjusted) if splits else 1.0
                if timespan in ("day", "week"):
                    bars.append(bar if divisor == 1.0 else _scale(bar, bar.t, divisor))
                else:
                    bars.extend(_intraday(ticker, day, window, divisor, crypto=crypto))
        bars = [bar for bar in bars if low_ms <= bar.t <= high_ms]
        if timespan == "week":
            return _weekly(bars, crypto=crypto)
        return bars

    # -- /v2/aggs/grouped ----------------------------------------------------------------------

    def _grouped(
        self, match: re.Match[str], query: dict[str, str], request_id: str, status: str
    ) -> _Response:
        day = _iso_date(match["day"], "date")
        adjusted = _boolean(query.get("adjusted", "true"), "adjusted")
        crypto = match["crypto"] is not None
        market = "crypto" if crypto else "stocks"
        with self._lock:
            tickers = sorted(t for t, info in self._tickers.items() if info.market == market)
        rows: list[msgspec.Raw] = []
        session = crypto or is_trading_day(day)
        # Polygon stamps grouped rows with the end of the window (16:00 New York for stocks),
        # not the day's start as the range endpoint does; callers must key rows by the date.
        # It stays at 16:00 on an early close too: which stamp Polygon gives those days is not
        # pinned here, and the warehouse re-stamps every row at its date's start anyway.
        if crypto:
            stamp = _midnight_ms(day, crypto=True) + _MS_PER_DAY - _MS_PER_MINUTE
        else:
            stamp = int(datetime.combine(day, SESSION_CLOSE, tzinfo=NEW_YORK).timestamp() * 1000)
        if session and HISTORY_START <= day and _midnight_ms(day, crypto=crypto) <= self._now_ms():
            for ticker in tickers:
                bar = _day_of(ticker, day)
                if self.accept_any_ticker:
                    flaws = imperfections(ticker, day.year)
                    if day in flaws.missing:
                        continue
                    if (kind := flaws.flawed.get(day)) is not None:
                        bar = _flawed(bar, kind)
                divisor = _split_divisor(self._splits_for(ticker), day, adjusted=adjusted)
                row = _row_json(_scale(bar, stamp, divisor), crypto)
                # The ticker spliced in front of the encoded bar: '{"T":"AAPL",' + '"v":...}'.
                rows.append(msgspec.Raw(b'{"T":' + msgspec.json.encode(ticker) + b"," + row[1:]))
        body: dict[str, Any] = {
            "queryCount": len(rows),
            "resultsCount": len(rows),
            "adjusted": adjusted,
        }
        if rows:
            body["results"] = rows
        body["status"] = status
        body["request_id"] = request_id
        return _json(200, body)

    # -- /v3/reference -------------------------------------------------------------------------

    def _splits_page(
        self,
        path: str,
        query: dict[str, str],
        offset: int,
        request_id: str,
        status: str,
        base_url: str,
    ) -> _Response:
        limit = _positive_int(query.get("limit", "10"), "limit")
        if limit > 1000:
            raise _BadRequest("limit must be at most 1000")
        order = query.get("order", "desc")
        sort = query.get("sort", "execution_date")
        if order not in ("asc", "desc") or sort not in ("execution_date", "ticker"):
            raise _BadRequest("order must be asc or desc; sort execution_date or ticker")
        if (ticker := query.get("ticker")) is not None:
            self._info(ticker)  # in any-ticker mode, brings in its derived split
        with self._lock:
            splits = list(self._splits)
        splits = [split for split in splits if _split_matches(split, query)]
        splits.sort(
            key=lambda s: (
                (s.execution_date, s.ticker)
                if sort == "execution_date"
                else (s.ticker, s.execution_date)
            ),
            reverse=order == "desc",
        )
        page = splits[offset : offset + limit]
        body: dict[str, Any] = {
            "results": [
                {
                    "execution_date": split.execution_date.isoformat(),
                    "id": split.id,
                    "split_from": split.split_from,
                    "split_to": split.split_to,
                    "ticker": split.ticker,
                }
                for split in page
            ],
            "status": status,
            "request_id": request_id,
        }
        if offset + limit < len(splits):
            body["next_url"] = _next_url(base_url, path, query, offset + limit)
        return _json(200, body)

    def _ticker_details(self, ticker: str, request_id: str, status: str) -> _Response:
        info = self._info(ticker)
        if info is None:
            return _error(404, request_id, status="NOT_FOUND", message="Ticker not found.")
        results: dict[str, Any] = {
            "ticker": info.ticker,
            "name": info.name,
            "market": info.market,
            "locale": "global" if info.market == "crypto" else "us",
            "active": True,
            "currency_name": "usd",
        }
        if info.market == "stocks":
            results["type"] = info.ticker_type or "CS"
            results["primary_exchange"] = "ARCX" if info.ticker_type == "ETF" else "XNAS"
            results["list_date"] = HISTORY_START.isoformat()
            root, _, suffix = info.ticker.partition(".")
            results["ticker_root"] = root
            if suffix:
                results["ticker_suffix"] = suffix
        return _json(200, {"request_id": request_id, "results": results, "status": status})


# ----------------------------------------------------------------------------------------------
# Helpers for answering


def _intraday(
    ticker: str, day: date, window_minutes: int, divisor: float, *, crypto: bool
) -> list[_Bar]:
    """Bars of `window_minutes` for one day of minutes (stocks: the session, 09:30 to 16:00 New
    York or 13:00 on an early close; crypto: the UTC day). Crypto bars count from midnight UTC.
    Stock bars of a size that divides an hour snap to the clock, as Polygon's do (an hour bar
    starts at the top of the hour: 09:00 holds 09:30-09:59); longer ones count from the open."""
    if crypto:
        start_ms, minutes, lead = _midnight_ms(day, crypto=True), 24 * 60, 0
    else:
        opens, closes = session_bounds_utc(day)
        start_ms = int(opens.timestamp() * 1000)
        minutes = int((closes - opens).total_seconds()) // 60
        # Minutes from the last clock boundary before the open to the open.
        open_minute = opens.astimezone(NEW_YORK).hour * 60 + opens.astimezone(NEW_YORK).minute
        lead = open_minute % window_minutes if 60 % window_minutes == 0 else 0
    per_minute = _minutes_of_day(ticker, day, minutes)
    bars: list[_Bar] = []
    for first in range(-lead, minutes, window_minutes):
        t = start_ms + first * _MS_PER_MINUTE
        parts = [
            _scale(minute, t, divisor)
            for minute in per_minute[max(first, 0) : first + window_minutes]
        ]
        bars.append(parts[0] if len(parts) == 1 else _merge(t, parts))
    return bars


def _weekly(daily: list[_Bar], *, crypto: bool) -> list[_Bar]:
    """Weeks starting on Sunday at midnight in the market's time zone, as Polygon's do."""
    weeks: dict[date, list[_Bar]] = {}
    for bar in daily:
        day = _market_date(bar.t, crypto=crypto)
        sunday = day - timedelta(days=(day.weekday() + 1) % 7)
        weeks.setdefault(sunday, []).append(bar)
    return [_merge(_midnight_ms(sunday, crypto=crypto), parts) for sunday, parts in weeks.items()]


def _ticker_of(path: str, query: Mapping[str, str]) -> str | None:
    """The ticker a request is about, for per-ticker faults."""
    if match := _AGGS_PATH.match(path):
        return match["ticker"]
    if match := _TICKER_DETAILS_PATH.match(path):
        return match["ticker"]
    if path == _SPLITS_PATH:
        return query.get("ticker")
    return None


def _split_matches(split: SimulatedSplit, query: Mapping[str, str]) -> bool:
    executed = split.execution_date.isoformat()
    checks: dict[str, Callable[[str, str], bool]] = {
        "": lambda have, want: have == want,
        ".gte": lambda have, want: have >= want,
        ".gt": lambda have, want: have > want,
        ".lte": lambda have, want: have <= want,
        ".lt": lambda have, want: have < want,
    }
    for suffix, check in checks.items():
        if (want := query.get(f"ticker{suffix}")) is not None and not check(split.ticker, want):
            return False
        if (want := query.get(f"execution_date{suffix}")) is not None:
            _iso_date(want, f"execution_date{suffix}")
            if not check(executed, want):
                return False
    reverse = query.get("reverse_split")
    return reverse is None or _boolean(reverse, "reverse_split") == (
        split.split_from > split.split_to
    )


def _bound_ms(text: str, *, crypto: bool, end: bool) -> int:
    """A `from`/`to` path segment (YYYY-MM-DD or ms) as an inclusive ms bound; a date covers
    its whole day in the market's time zone."""
    if text.isdigit():
        return int(text)
    day = _iso_date(text, "to" if end else "from")
    if end:
        return _midnight_ms(day + timedelta(days=1), crypto=crypto) - 1
    return _midnight_ms(day, crypto=crypto)


def _iso_date(text: str, name: str) -> date:
    if not _ISO_DATE.match(text):
        raise _BadRequest(f"{name} must be a date (YYYY-MM-DD), got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _BadRequest(f"{name} must be a date (YYYY-MM-DD), got {text!r}") from None


def _positive_int(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise _BadRequest(f"{name} must be a positive whole number, got {text!r}")
    return int(text)


def _boolean(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise _BadRequest(f"{name} must be true or false, got {text!r}")
    return lowered == "true"


def _next_url(base_url: str, path: str, query: Mapping[str, str], offset: int) -> str:
    # The cursor carries the original query, so a next_url needs nothing added (no key either).
    payload = msgspec.json.encode({"query": dict(query), "offset": offset})
    cursor = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{base_url}{path}?{urlencode({'cursor': cursor})}"


def _decode_cursor(cursor: str) -> tuple[dict[str, str], int]:
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(payload, type=dict[str, Any])
        query = {str(name): str(value) for name, value in decoded["query"].items()}
        offset = int(decoded["offset"])
    except (ValueError, KeyError, TypeError, AttributeError, msgspec.DecodeError):
        raise _BadRequest("cursor is not one this server issued") from None
    return query, offset


def _json(status: int, body: Mapping[str, Any]) -> _Response:
    return _Response(status, msgspec.json.encode(body), {"Content-Type": "application/json"})


def _error(http_status: int, request_id: str, *, status: str = "ERROR", **fields: str) -> _Response:
    """Polygon's error shape: `status` ("ERROR", "NOT_AUTHORIZED", "NOT_FOUND"), `request_id`,
    and an `error` or `message` text."""
    return _json(http_status, {"status": status, "request_id": request_id, **fields})


# ----------------------------------------------------------------------------------------------
# HTTP transport


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of concurrent clients, which
    # then wait a full second to retry: a benchmark with 8 workers would measure that instead.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: PolygonSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (a timeout, a test that stopped the server) close the socket
        # while the answer is being written; that is the point of those tests, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as Polygon does: a client's connection pool then behaves as in production.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.simulator._lock:
            self.server.simulator._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.simulator._lock:
                self.server.simulator._connections.discard(self.connection)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        simulator = self.server.simulator
        # Drain any body so the connection stays usable for the next request.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        try:
            response = simulator._respond(self.command, self.path, dict(self.headers.items()))
        except Exception as exc:  # the simulator must answer, even about its own bugs
            response = _error(500, uuid.uuid4().hex, error=f"simulator error: {exc!r}")
        if response.delay_seconds and simulator._stopping.wait(response.delay_seconds):
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - inherited name
        if self.server.simulator.verbose:
            super().log_message(format, *args)


# ----------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.polygon_sim",
        description="Serve a Polygon-compatible API with deterministic prices until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--page-size", type=int, default=MAX_LIMIT, help="results per page")
    parser.add_argument("--api-key", default=None, help="require this key (default: any)")
    parser.add_argument(
        "--accept-any-ticker",
        action="store_true",
        help="serve any well-formed ticker, with splits, flawed bars and missing sessions",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    simulator = PolygonSimulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        page_size=args.page_size,
        accept_any_ticker=args.accept_any_ticker,
        verbose=args.verbose,
    )
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    # Set explicitly: a process started in the background by a shell inherits SIGINT ignored,
    # and Python then never turns Ctrl-C into KeyboardInterrupt, so it would serve forever.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    simulator.start()
    print(f"Polygon simulator on {simulator.url} (Ctrl-C to stop)", flush=True)
    try:
        stop_requested.wait()
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
