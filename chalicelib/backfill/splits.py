"""Split factors: how a traded price is expressed in today's shares.

A bar traded before a split is divided by the split's ratio (shares after per share before) to
be comparable with prices after it, and its volume multiplied by it; several splits multiply.
A split takes effect at midnight New York of its execution date, and a bar is in the shares of
its last trading day (a week, the only bar that can hold a split, is stored that way), as in
the `adjusted_bars` view (migration 0009), which applies the same rule to reads.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, datetime, time

from chalicelib.market.calendar import NEW_YORK
from chalicelib.polygon import PolygonBar

# Where a week's divisor is taken: six days after its Sunday start, past its last trading day.
_WEEK_PRICED_AFTER_MS = 6 * 86_400_000


def priced_at_ms(t: int, timeframe: str) -> int:
    """The moment whose shares a bar starting at `t` is expressed in."""
    return t + _WEEK_PRICED_AFTER_MS if timeframe == "1w" else t


class SplitFactors:
    """The divisor of each moment's prices, from one symbol's splits as (execution date,
    ratio) pairs."""

    def __init__(self, splits: Iterable[tuple[date, float]]) -> None:
        ordered = sorted(splits)
        self._days = [day for day, _ in ordered]
        self._effective_ms = [
            int(datetime.combine(day, time(0), tzinfo=NEW_YORK).timestamp() * 1000)
            for day in self._days
        ]
        # remaining[k]: the product of the ratios of the k-th split and every later one, the
        # divisor of a moment with k splits behind it; multiplied from the newest split back,
        # in the order the view multiplies them.
        remaining = [1.0]
        for _, ratio in reversed(ordered):
            remaining.append(remaining[-1] * ratio)
        self._remaining = remaining[::-1]

    def at(self, moment: datetime, timeframe: str) -> float:
        """The divisor of the prices of a `timeframe` bar starting at `moment`."""
        return self.at_ms(priced_at_ms(int(moment.timestamp() * 1000), timeframe))

    def at_ms(self, ms: int) -> float:
        """The divisor of prices at `ms` milliseconds since the epoch."""
        return self._remaining[bisect_right(self._effective_ms, ms)]

    def changes_after(self, day: date) -> bool:
        """Whether a split executes after market date `day`, so prices from `day` on differ
        in today's shares."""
        return bool(self._days) and self._days[-1] > day

    def in_todays_shares(self, bar: PolygonBar, timeframe: str) -> PolygonBar:
        """`bar` of `timeframe`, in its own shares, with its prices divided and its volume
        multiplied by its divisor."""
        return _scaled(bar, self.at_ms(priced_at_ms(bar.t, timeframe)))

    def in_shares_of(self, bar: PolygonBar, timeframe: str) -> PolygonBar:
        """The reverse: `bar` of `timeframe`, in today's shares, back in its own."""
        return _scaled(bar, 1.0 / self.at_ms(priced_at_ms(bar.t, timeframe)))


def _scaled(bar: PolygonBar, factor: float) -> PolygonBar:
    """`bar` with its prices divided and its volume multiplied by `factor`."""
    if factor == 1.0:
        return bar
    return PolygonBar(
        bar.t,
        bar.o / factor,
        bar.h / factor,
        bar.l / factor,
        bar.c / factor,
        bar.v * factor,
        bar.vw / factor if bar.vw is not None else None,
        bar.n,
    )
