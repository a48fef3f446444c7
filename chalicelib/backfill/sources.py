"""Where the backfill gets its bars: the `BarSource` protocol, and the sources that implement it.

`PolygonClient` is a source as it is: range requests per (ticker, bar size, window). A
`GroupedDaySource` answers one market date for many symbols from a single grouped-daily
request, which is how the planner serves a day's bar of every tracked stock with one call. A
`StoredBarSource` builds a timeframe from the symbol's stored finer bars
(`chalicelib.market.timeframes.DERIVED_FROM`) and asks the provider nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol

import msgspec

from chalicelib.backfill import repository
from chalicelib.backfill.splits import SplitFactors
from chalicelib.db import ConnectionSource
from chalicelib.market.calendar import daily_bar_start, market_date, market_zone
from chalicelib.market.tickers import Market, provider_ticker
from chalicelib.market.timeframes import DAILY, TIMEFRAME_SECONDS, TIMEFRAMES

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


class StoredBarSource:
    """One symbol's bars of a coarser timeframe, built from its stored bars of `base` (traded
    prices, validated bars only) by the database; its splits are the stored ones. It makes no
    provider request, so a run through it reports none."""

    request_count = 0

    def __init__(
        self, conn_source: ConnectionSource, symbol: str, asset_class: str, base: str
    ) -> None:
        self._conn_source = conn_source
        self.symbol = symbol
        self.asset_class = asset_class
        self.base = base
        self._ticker = provider_ticker(symbol, asset_class)
        self._zone = market_zone(asset_class)

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
        if ticker != self._ticker:
            raise ValueError(f"this source builds bars of {self._ticker} only, not {ticker}")
        if adjusted:
            raise ValueError("stored bars are traded prices; they are built unadjusted only")
        seconds = _seconds_of(multiplier, timespan)
        first, after_last = start, end + timedelta(days=1)
        minutes: int | None = seconds // 60
        zone = None
        if timespan == "week":
            # Whole weeks: from the Sunday that starts the week of `start`.
            first = start - timedelta(days=(start.weekday() + 1) % 7)
            minutes, zone = None, str(self._zone)
        with self._conn_source.connection() as conn:
            bars = repository.list_derived_bars(
                conn,
                symbol=self.symbol,
                base=self.base,
                start_at=datetime.combine(first, time(0), tzinfo=self._zone),
                end_before=datetime.combine(after_last, time(0), tzinfo=self._zone),
                minutes=minutes,
                zone=zone,
            )
            if zone is not None and bars:
                # Weeks come in today's shares; stored, a week is in the shares of its last
                # day (see backfill/splits.py), the prices traded after the last split in it.
                in_effect = repository.list_splits_of(conn, self.symbol, since=date.min)
                factors = SplitFactors(
                    (row.execution_date, row.split_to / row.split_from)
                    for row in in_effect
                    if row.execution_date <= market_date(datetime.now(UTC), self.asset_class)
                )
                bars = [factors.in_shares_of(bar, "1w") for bar in bars]
        yield bars

    def splits(self, ticker: str, since: date) -> list[Split]:
        from chalicelib.polygon import Split

        with self._conn_source.connection() as conn:
            stored = repository.list_splits_of(conn, self.symbol, since=since)
        return [Split(ticker, row.execution_date, row.split_from, row.split_to) for row in stored]

    def redact(self, text: str) -> str:
        return text  # it holds no secret


def _seconds_of(multiplier: int, timespan: str) -> int:
    """The length of a bar size the warehouse builds: one of its timeframes."""
    for name, spelled in TIMEFRAMES.items():
        if spelled == (multiplier, timespan):
            return TIMEFRAME_SECONDS[name]
    raise ValueError(f"not a timeframe of the warehouse: {multiplier}/{timespan}")
