"""The bar sizes the warehouse knows, and how Polygon spells each.

`TIMEFRAMES` is the one list: the backfill fetches with it, the read endpoints and the symbol
models validate with it, the planner and the worker name their messages with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple


class PolygonTimespan(NamedTuple):
    """How Polygon's aggregates endpoint spells a bar size: `/range/{multiplier}/{timespan}/`."""

    multiplier: int
    timespan: str


TIMEFRAMES: dict[str, PolygonTimespan] = {
    "1m": PolygonTimespan(1, "minute"),
    "5m": PolygonTimespan(5, "minute"),
    "15m": PolygonTimespan(15, "minute"),
    "30m": PolygonTimespan(30, "minute"),
    "1h": PolygonTimespan(1, "hour"),
    "4h": PolygonTimespan(4, "hour"),
    "1d": PolygonTimespan(1, "day"),
    "1w": PolygonTimespan(1, "week"),
}
"""Timeframe name → Polygon (multiplier, timespan), smallest first."""

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
    "1w": 604_800,
}
"""Nominal length of one bar of each timeframe."""

# The same names as a type, so request models reject an unknown timeframe while decoding.
Timeframe = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]

DAILY: Timeframe = "1d"
DEFAULT_TIMEFRAMES: tuple[Timeframe, ...] = (DAILY,)

DAILY_OR_LONGER: frozenset[str] = frozenset(
    name for name, seconds in TIMEFRAME_SECONDS.items() if seconds >= TIMEFRAME_SECONDS[DAILY]
)
"""Bar sizes of a day or more: a new symbol's first backfill reaches back years for these and
only days for intraday ones."""

DERIVED_FROM: dict[str, str] = {
    "5m": "1m",
    "15m": "1m",
    "30m": "1m",
    "1h": "1m",
    "1w": "1d",
}
"""Timeframes the warehouse builds from a finer stored one instead of fetching them, when the
symbol tracks that finer one too. Each bucket is whole base bars on a grid the provider shares:
N minutes dividing an hour from midnight UTC (the same on the New York clock, whose offset is
whole hours), and weeks from Sunday on the market's calendar. `4h` is not among them: on the
New York clock its grid moves against UTC with daylight saving, so it stays fetched."""


def derived_from(timeframe: str, tracked: Iterable[str]) -> str | None:
    """The stored timeframe `timeframe` is built from for a symbol tracking `tracked`, or None
    when it is fetched from the provider."""
    base = DERIVED_FROM.get(timeframe)
    return base if base is not None and base in tracked else None
