"""The one list of bar sizes: its three spellings (names, Polygon's, seconds) agree."""

from __future__ import annotations

from typing import get_args

from chalicelib.market.timeframes import (
    DAILY_OR_LONGER,
    DEFAULT_TIMEFRAMES,
    DERIVED_FROM,
    TIMEFRAME_SECONDS,
    TIMEFRAMES,
    Timeframe,
    derived_from,
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


def test_a_timeframe_is_built_from_a_finer_one_only_when_that_one_is_tracked() -> None:
    tracked = ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]

    assert {name: derived_from(name, tracked) for name in tracked} == {
        "1m": None,
        "5m": "1m",
        "15m": "1m",
        "30m": "1m",
        "1h": "1m",
        "4h": None,  # its New York grid moves against UTC with daylight saving: fetched
        "1d": None,
        "1w": "1d",
    }
    assert derived_from("1h", ["1h", "1d"]) is None
    assert derived_from("1w", ["1w"]) is None


def test_each_built_timeframe_is_whole_base_bars() -> None:
    for name, base in DERIVED_FROM.items():
        assert TIMEFRAME_SECONDS[name] % TIMEFRAME_SECONDS[base] == 0
        assert TIMEFRAME_SECONDS[name] > TIMEFRAME_SECONDS[base]
