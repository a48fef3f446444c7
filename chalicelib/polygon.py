"""Polygon.io REST client for the backfill: bars, grouped daily bars, splits, ticker details.

The key travels in the `Authorization: Bearer` header, never in a URL, so `next_url` links
(which carry no key) are followed as they are, and no URL, log line or error message holds it.
Every request has a timeout; 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (honouring `Retry-After`); 401 and 403 are not, since waiting does not fix
a wrong key or a plan limit. Optional pacing keeps a client under `max_rpm` requests a minute
(the free plan allows 5).

The backfill imports this module, the API does not: `requests` is imported when a client is
built, so merely importing the module stays cheap.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import msgspec

from chalicelib.errors import ConfigError, ProviderError
from chalicelib.market.tickers import Market

if TYPE_CHECKING:
    import requests

    from chalicelib.config import Settings

__all__ = [
    "GroupedBar",
    "PolygonAuthError",
    "PolygonBadResponse",
    "PolygonBar",
    "PolygonClient",
    "PolygonError",
    "PolygonNotAuthorized",
    "PolygonUnavailable",
    "Split",
]

TIMESPANS: frozenset[str] = frozenset(
    {"second", "minute", "hour", "day", "week", "month", "quarter", "year"}
)
MAX_AGGREGATES_LIMIT = 50_000
SPLITS_PAGE_LIMIT = 1_000
ACCEPTED_STATUSES = frozenset({"OK", "DELAYED"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


# ----------------------------------------------------------------------------------------------
# Errors


class PolygonError(ProviderError):
    """A Polygon request failed. `path` is the request path (no host, no query: never a key)
    and `status` the HTTP status, when there was a response."""

    def __init__(self, message: str, *, path: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.status = status


class PolygonAuthError(PolygonError):
    """401: the key is wrong or revoked."""


class PolygonNotAuthorized(PolygonError):
    """403: the plan does not include this data (history depth, timespan, market)."""


class PolygonUnavailable(PolygonError):
    """Rate limits, server errors or the network outlasted every retry."""


class PolygonBadResponse(PolygonError):
    """The answer was not the JSON Polygon documents (malformed, wrong shape, error status)."""


# ----------------------------------------------------------------------------------------------
# Results


class PolygonBar(msgspec.Struct, frozen=True):
    """One aggregate bar; `t` is the window start in ms since the epoch (UTC)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float | None = None
    n: int | None = None


class GroupedBar(msgspec.Struct, frozen=True):
    """One row of a grouped-daily answer, keyed by the date asked for: Polygon stamps `t` at
    the end of the window, which is not the session's date in every time zone."""

    ticker: str
    day: date
    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float | None = None
    n: int | None = None

    def bar(self) -> PolygonBar:
        return PolygonBar(self.t, self.o, self.h, self.l, self.c, self.v, self.vw, self.n)


class Split(msgspec.Struct, frozen=True):
    """A stock split: `split_to` shares for every `split_from` (4-for-1: from 1, to 4)."""

    ticker: str
    execution_date: date
    split_from: float
    split_to: float
    id: str | None = None

    @property
    def ratio(self) -> float:
        return self.split_to / self.split_from


# Wire shapes: only the fields the client reads; anything else Polygon adds is ignored.


class _Page(msgspec.Struct):
    status: str | None = None
    next_url: str | None = None


class _AggregatesPage(_Page):
    results: list[PolygonBar] = []


class _GroupedRow(msgspec.Struct):
    T: str
    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float
    vw: float | None = None
    n: int | None = None


class _GroupedPage(_Page):
    results: list[_GroupedRow] = []


class _SplitsPage(_Page):
    results: list[Split] = []


class _TickerDetailsPage(_Page):
    results: dict[str, Any] | None = None


PageT = TypeVar("PageT", bound=_Page)


# ----------------------------------------------------------------------------------------------
# The client


class PolygonClient:
    """A Polygon REST client. One per thread: it owns a `requests.Session` (connection reuse)
    and counts its requests in `request_count`.

    `max_rpm` paces this client's requests to that many per rolling minute; `max_retries` is the
    number of retries after the first attempt; backoff waits `backoff_base * 2**attempt` seconds
    plus up to `jitter` of that, capped at `max_backoff` (which also caps `Retry-After`, so a
    Lambda never sleeps past its own timeout on the server's word). `sleep` and `clock` are
    injectable so that tests of retries and pacing take no time.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_rpm: int | None = None,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        max_backoff: float = 60.0,
        jitter: float = 0.1,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_key:
            raise ConfigError("a Polygon API key is required")
        if max_rpm is not None and max_rpm < 1:
            raise ValueError("max_rpm must be at least 1 (or None for no pacing)")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        import requests

        self._requests = requests
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._api_key = api_key
        self.timeout = timeout
        self.max_rpm = max_rpm
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.jitter = jitter
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._sent_at: deque[float] = deque()
        self._pacing_lock = threading.Lock()
        self.request_count = 0

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> PolygonClient:
        """A client for the configured provider: POLYGON_BASE_URL, POLYGON_TIMEOUT_SECONDS,
        POLYGON_MAX_RPM, and the key from POLYGON_API_KEY or POLYGON_API_KEY_SECRET_ARN.
        `options` are passed on (retries, backoff, session)."""
        from chalicelib.secrets import resolve_polygon_api_key

        api_key = resolve_polygon_api_key(settings)
        if not api_key:
            raise ConfigError(
                "no Polygon API key: set POLYGON_API_KEY or POLYGON_API_KEY_SECRET_ARN"
            )
        return cls(
            settings.polygon_base_url,
            api_key,
            timeout=settings.polygon_timeout_seconds,
            max_rpm=settings.polygon_max_rpm,
            **options,
        )

    def __repr__(self) -> str:
        return f"PolygonClient(base_url={self.base_url!r}, requests={self.request_count})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> PolygonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------------------------

    def aggregates(
        self,
        ticker: str,
        multiplier: int,
        timespan: str,
        start: date,
        end: date,
        *,
        adjusted: bool = True,
        limit: int = MAX_AGGREGATES_LIMIT,
    ) -> Iterator[list[PolygonBar]]:
        """Bars from `start` to `end` (inclusive), oldest first, one list per page: the first
        request, then each `next_url` until there is none. Pages arrive as they are fetched,
        so a caller can store each before asking for the next. Arguments are checked at the
        call, requests start with the iteration."""
        if multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if timespan not in TIMESPANS:
            raise ValueError(f"timespan must be one of {sorted(TIMESPANS)}, got {timespan!r}")
        if not 1 <= limit <= MAX_AGGREGATES_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_AGGREGATES_LIMIT}")
        path = (
            f"/v2/aggs/ticker/{_segment(ticker)}/range/{multiplier}/{timespan}"
            f"/{start.isoformat()}/{end.isoformat()}"
        )
        params = {"adjusted": _flag(adjusted), "sort": "asc", "limit": str(limit)}
        return (page.results for page in self._pages(path, params, _AggregatesPage))

    def grouped_daily(
        self, market: Market, day: date, *, adjusted: bool = True
    ) -> list[GroupedBar]:
        """Every ticker's daily bar of one market date, in one request. Empty on a day without
        a session. Rows carry `day`, the date asked for (see GroupedBar)."""
        if market == "stocks":
            path = f"/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}"
        elif market == "crypto":
            path = f"/v2/aggs/grouped/locale/global/market/crypto/{day.isoformat()}"
        else:
            raise ValueError(f"market must be 'stocks' or 'crypto', got {market!r}")
        page = self._page(path, {"adjusted": _flag(adjusted)}, _GroupedPage)
        return [
            GroupedBar(row.T, day, row.t, row.o, row.h, row.l, row.c, row.v, row.vw, row.n)
            for row in page.results
        ]

    def splits(self, ticker: str, since: date) -> list[Split]:
        """Splits of `ticker` executed on or after `since`, oldest first."""
        return self._splits(since, ticker=ticker)

    def splits_since(self, since: date) -> list[Split]:
        """Splits of every ticker executed on or after `since`, oldest first: one paged lookup
        instead of one per tracked symbol."""
        return self._splits(since)

    def _splits(self, since: date, *, ticker: str | None = None) -> list[Split]:
        params = {
            "execution_date.gte": since.isoformat(),
            "order": "asc",
            "sort": "execution_date",
            "limit": str(SPLITS_PAGE_LIMIT),
        }
        if ticker is not None:
            params = {"ticker": ticker, **params}
        found: list[Split] = []
        for page in self._pages("/v3/reference/splits", params, _SplitsPage):
            found.extend(page.results)
        return found

    def ticker_details(self, ticker: str) -> dict[str, Any] | None:
        """Polygon's reference record of `ticker` (name, market, type, active, ...), or None
        when Polygon does not know it."""
        path = f"/v3/reference/tickers/{_segment(ticker)}"
        body = self._get(self.base_url + path, {}, path=path, missing_ok=True)
        if body is None:
            return None
        page = self._decode(body, _TickerDetailsPage, path)
        if page.results is None:
            raise PolygonBadResponse(f"GET {path}: 200 without results", path=path, status=200)
        return page.results

    def ticker_exists(self, ticker: str) -> bool:
        return self.ticker_details(ticker) is not None

    # -- paging and decoding -------------------------------------------------------------------

    def _page(self, path: str, params: Mapping[str, str], shape: type[PageT]) -> PageT:
        body = self._get(self.base_url + path, params, path=path)
        assert body is not None  # only ticker details accept a 404
        return self._decode(body, shape, path)

    def _pages(self, path: str, params: Mapping[str, str], shape: type[PageT]) -> Iterator[PageT]:
        page = self._page(path, params, shape)
        yield page
        seen: set[str] = set()
        while page.next_url:
            url = self._follow(page.next_url, path)
            if url in seen:
                raise PolygonBadResponse(f"GET {path}: next_url repeats itself", path=path)
            seen.add(url)
            next_path = urlsplit(url).path
            body = self._get(url, {}, path=next_path)
            assert body is not None
            page = self._decode(body, shape, next_path)
            yield page

    def _follow(self, next_url: str, path: str) -> str:
        """The URL to request for a `next_url`. Its path and query are kept and the host is the
        configured one: the bearer key must only ever go to the host it was configured for,
        whatever host name the answer mentions (Polygon's links may name api.massive.com)."""
        parts = urlsplit(next_url)
        if not parts.path.startswith("/"):
            raise PolygonBadResponse(f"GET {path}: next_url has no path", path=path)
        return f"{self._origin}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def _decode(self, body: bytes, shape: type[PageT], path: str) -> PageT:
        try:
            page = msgspec.json.decode(body, type=shape)
        except msgspec.DecodeError as exc:
            raise PolygonBadResponse(
                f"GET {path}: unreadable answer ({self.redact(str(exc))})", path=path, status=200
            ) from None
        if page.status is not None and page.status not in ACCEPTED_STATUSES:
            raise PolygonBadResponse(
                f"GET {path}: status {self.redact(page.status)!r}", path=path, status=200
            )
        return page

    # -- transport -----------------------------------------------------------------------------

    def _get(
        self, url: str, params: Mapping[str, str], *, path: str, missing_ok: bool = False
    ) -> bytes | None:
        """The body of a 200 answer (None for a 404 when `missing_ok`), after retries."""
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        problem = "no attempt made"
        last_status: int | None = None
        for attempt in range(self.max_retries + 1):
            self._pace()
            self.request_count += 1
            try:
                response = self._session.get(
                    url, params=params or None, headers=headers, timeout=self.timeout
                )
            except self._requests.Timeout:
                problem, last_status = f"no answer within {self.timeout:g}s", None
                wait = self._backoff(attempt)
            except self._requests.ConnectionError as exc:
                problem, last_status = f"connection failed ({type(exc).__name__})", None
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if status == 200:
                    return bytes(response.content)
                if status == 404 and missing_ok:
                    return None
                detail = self._detail(response)
                if status == 401:
                    raise PolygonAuthError(
                        f"GET {path}: 401 the API key was rejected{detail}", path=path, status=401
                    )
                if status == 403:
                    raise PolygonNotAuthorized(
                        f"GET {path}: 403 not included in the plan{detail}", path=path, status=403
                    )
                if status not in RETRYABLE_STATUSES:
                    raise PolygonError(f"GET {path}: {status}{detail}", path=path, status=status)
                problem, last_status = f"{status}{detail}", status
                retry_after = self._retry_after(response)
                wait = self._backoff(attempt) if retry_after is None else retry_after
            if attempt < self.max_retries:
                self._sleep(min(wait, self.max_backoff))
        attempts = self.max_retries + 1
        raise PolygonUnavailable(
            f"GET {path}: gave up after {attempts} attempt{'s' if attempts > 1 else ''}; "
            f"last: {problem}",
            path=path,
            status=last_status,
        )

    def _pace(self) -> None:
        """Wait until a request fits in the rolling minute (sliding window of send times)."""
        if self.max_rpm is None:
            return
        with self._pacing_lock:
            now = self._clock()
            while self._sent_at and now - self._sent_at[0] >= 60.0:
                self._sent_at.popleft()
            if len(self._sent_at) >= self.max_rpm:
                self._sleep(60.0 - (now - self._sent_at[0]))
                now = self._clock()
                while self._sent_at and now - self._sent_at[0] >= 60.0:
                    self._sent_at.popleft()
            self._sent_at.append(now)

    def _backoff(self, attempt: int) -> float:
        delay = self.backoff_base * 2.0**attempt
        return delay + delay * self.jitter * self._random.random()

    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        # Seconds only: Polygon sends seconds, and an HTTP date would need a clock we trust.
        raw = response.headers.get("Retry-After", "").strip()
        try:
            seconds = float(raw)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None

    def _detail(self, response: requests.Response) -> str:
        """Polygon's own words about an error (`error` or `message`), redacted and shortened."""
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return ""
        if not isinstance(body, dict):
            return ""
        text = body.get("error") or body.get("message")
        if not isinstance(text, str) or not text:
            return ""
        return f": {self.redact(text)[:200]}"

    def redact(self, text: str) -> str:
        """`text` with this client's key, and any `apiKey=` query value, masked."""
        text = text.replace(self._api_key, "***")
        return _API_KEY_PARAM.sub(r"\1***", text)


_API_KEY_PARAM = re.compile(r"((?:apiKey|apikey|api_key)=)[^&\s\"']+")


def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    if not parts.scheme or not parts.netloc:
        raise ConfigError(f"the Polygon base URL must be absolute, got {base_url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _segment(ticker: str) -> str:
    # Tickers go into the path as they are ("X:BTCUSD", "BRK.B"); anything that could change
    # the path's shape (a slash, a question mark) is escaped.
    return quote(ticker, safe=":.-")


def _flag(value: bool) -> str:
    return "true" if value else "false"
