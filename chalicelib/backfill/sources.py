"""Where the backfill gets its bars: the `BarSource` protocol, and the sources that implement it.

`PolygonClient` is a source as it is: range requests per (ticker, bar size, window). A
`GroupedDaySource` answers one market date for many symbols from a single grouped-daily
request, which is how the planner serves a day's bar of every tracked stock with one call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import TYPE_CHECKING, Protocol

import msgspec

from chalicelib.market.calendar import daily_bar_start
from chalicelib.market.tickers import Market
from chalicelib.market.timeframes import DAILY, TIMEFRAMES

if TYPE_CHECKING:
    from chalicelib.polygon import GroupedBar, PolygonBar, PolygonClient, Split


class BarSource(Protocol):
    """What a backfill unit asks of its provider."""

    @property
    def request_count(self) -> int:
        """Provider requests made so far; a run reports the difference it made."""
        ...

    def aggregates(
        self,
        ticker: str,
        multiplier: int,
        timespan: str,
        start: date,
        end: date,
        *,
        adjusted: bool,
    ) -> Iterable[list[PolygonBar]]:
        """Bars of `ticker` from `start` to `end` (market dates, inclusive), in pages; traded
        prices unless `adjusted` (then in today's shares)."""
        ...

    def splits(self, ticker: str, since: date) -> list[Split]:
        """Splits of `ticker` executed on or after `since`."""
        ...

    def redact(self, text: str) -> str:
        """`text` with every secret of this source (its API key) masked, for errors."""
        ...


class GroupedDaySource:
    """The bars of one market date, for every ticker, from one grouped-daily answer.

    `aggregates` gives a ticker's daily bar when the window asked for contains that date, and
    nothing otherwise; `splits` uses the provider's bulk lookup once per `since`, so a split
    is still seen without one request per symbol. `adjusted` says how `rows` were fetched; a
    request for the other kind of prices is refused rather than answered wrongly.
    """

    def __init__(
        self,
        client: PolygonClient,
        market: Market,
        day: date,
        rows: Iterable[GroupedBar],
        *,
        adjusted: bool = False,
    ) -> None:
        self._client = client
        self.day = day
        self.adjusted = adjusted
        # Grouped rows are stamped at the end of the window (see GroupedBar); the range
        # endpoint puts a daily bar at the start of its market date, so that is where they go.
        start_ms = int(daily_bar_start(day, market).timestamp() * 1000)
        self._bars: dict[str, PolygonBar] = {
            row.ticker: msgspec.structs.replace(row.bar(), t=start_ms) for row in rows
        }
        self._splits_since: dict[date, list[Split]] = {}

    @property
    def request_count(self) -> int:
        return self._client.request_count

    def aggregates(
        self,
        ticker: str,
        multiplier: int,
        timespan: str,
        start: date,
        end: date,
        *,
        adjusted: bool,
    ) -> Iterator[list[PolygonBar]]:
        if (multiplier, timespan) != TIMEFRAMES[DAILY]:
            raise ValueError("a grouped-daily source serves daily bars only")
        if adjusted != self.adjusted:
            kind = "split-adjusted" if self.adjusted else "traded"
            raise ValueError(f"this grouped-daily source holds {kind} prices only")
        bar = self._bars.get(ticker)
        yield [bar] if bar is not None and start <= self.day <= end else []

    def splits(self, ticker: str, since: date) -> list[Split]:
        if since not in self._splits_since:
            self._splits_since[since] = self._client.splits_since(since)
        return [split for split in self._splits_since[since] if split.ticker == ticker]

    def redact(self, text: str) -> str:
        return self._client.redact(text)
