"""The one list of bar sizes: its three spellings (names, Polygon's, seconds) agree."""

from __future__ import annotations

from typing import get_args

from chalicelib.market.timeframes import (
    DAILY_OR_LONGER,
    DEFAULT_TIMEFRAMES,
    TIMEFRAME_SECONDS,
    TIMEFRAMES,
    Timeframe,
)


def test_every_spelling_names_the_same_timeframes_smallest_first() -> None:
    assert list(TIMEFRAMES) == list(TIMEFRAME_SECONDS) == list(get_args(Timeframe))
    assert list(TIMEFRAME_SECONDS.values()) == sorted(TIMEFRAME_SECONDS.values())


def test_polygon_spells_each_bar_size_as_its_length() -> None:
    unit_seconds = {"minute": 60, "hour": 3600, "day": 86_400, "week": 604_800}
    assert {
        name: multiplier * unit_seconds[timespan]
        for name, (multiplier, timespan) in TIMEFRAMES.items()
    } == TIMEFRAME_SECONDS


def test_daily_and_weekly_are_the_long_timeframes() -> None:
    assert DAILY_OR_LONGER == {"1d", "1w"}
    assert DEFAULT_TIMEFRAMES == ("1d",)
