from __future__ import annotations

from datetime import UTC, date, datetime
from typing import NamedTuple

import pytest

from chalicelib.backfill.validation import (
    FLAG_NAMES,
    INFORMATIONAL_FLAGS,
    SEVERE_FLAGS,
    PriorBars,
    Thresholds,
    flag_names,
    is_validated,
    validate_bars,
)
from chalicelib.config import Settings
from chalicelib.market.calendar import NEW_YORK


class Bar(NamedTuple):
    t: int
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float


MINUTE = 60_000
DAY = 86_400_000
# 2024-03-04 is a Monday; New York is on EST (UTC-5) until 2024-03-10.
MONDAY_UTC = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp() * 1000)
MONDAY_NY = int(datetime(2024, 3, 4, tzinfo=NEW_YORK).timestamp() * 1000)
THRESHOLDS = Thresholds(max_jump_pct=25.0, volume_spike_factor=10.0, volume_window=4)


def minute_bars(count: int, *, start: int = MONDAY_UTC, price: float = 100.0) -> list[Bar]:
    return [
        Bar(start + i * MINUTE, price, price + 1, price - 1, price, 1000.0) for i in range(count)
    ]


def flags(bars: list[Bar], **options: object) -> list[list[str]]:
    settings: dict[str, object] = {
        "timeframe": "1m",
        "asset_class": "stock",
        "thresholds": THRESHOLDS,
    }
    settings.update(options)
    return [flag_names(mask) for mask in validate_bars(bars, **settings)]  # type: ignore[arg-type]


def test_clean_bars_have_no_flags():
    assert flags(minute_bars(10)) == [[]] * 10


def test_every_flag_is_either_severe_or_informational():
    assert SEVERE_FLAGS | INFORMATIONAL_FLAGS == set(FLAG_NAMES)
    assert not SEVERE_FLAGS & INFORMATIONAL_FLAGS
    assert SEVERE_FLAGS == {
        "ohlc_inconsistent",
        "non_positive_price",
        "negative_volume",
        "misaligned_timestamp",
    }


@pytest.mark.parametrize(
    ("o", "h", "l", "c"),
    [
        (100.0, 99.0, 98.0, 98.5),  # high below the open
        (100.0, 101.0, 99.0, 102.0),  # high below the close
        (100.0, 101.0, 100.5, 100.8),  # low above the open
        (100.0, 101.0, 99.5, 99.0),  # low above the close
        (100.0, 99.0, 101.0, 100.0),  # high below low
    ],
)
def test_inconsistent_ohlc_is_severe(o, h, l, c):  # noqa: E741
    bars = [Bar(MONDAY_UTC, o, h, l, c, 10.0)]

    masks = validate_bars(bars, timeframe="1m", asset_class="stock", thresholds=THRESHOLDS)

    assert flag_names(masks[0]) == ["ohlc_inconsistent"]
    assert not is_validated(masks[0])


@pytest.mark.parametrize("field", ["o", "h", "l", "c"])
def test_zero_or_negative_price_is_severe(field):
    bar = Bar(MONDAY_UTC, 1.0, 1.0, 1.0, 1.0, 10.0)._replace(**{field: 0.0})
    low_bar = Bar(MONDAY_UTC, 1.0, 1.0, -1.0, 1.0, 10.0)

    assert "non_positive_price" in flags([bar])[0]
    assert "non_positive_price" in flags([low_bar])[0]


def test_negative_volume_is_severe_and_zero_volume_is_fine():
    bars = [
        Bar(MONDAY_UTC, 1.0, 1.0, 1.0, 1.0, -5.0),
        Bar(MONDAY_UTC + MINUTE, 1.0, 1.0, 1.0, 1.0, 0.0),
    ]

    masks = validate_bars(bars, timeframe="1m", asset_class="stock", thresholds=THRESHOLDS)

    assert [flag_names(mask) for mask in masks] == [["negative_volume"], []]
    assert [is_validated(mask) for mask in masks] == [False, True]


def test_price_jump_beyond_the_threshold_is_informational():
    bars = minute_bars(3)
    bars[1] = bars[1]._replace(o=100.0, h=130.0, c=126.0)  # close 26% above the previous close
    bars[2] = bars[2]._replace(o=125.0, h=126.0, l=124.0, c=125.0)  # 0.8% below bar 1's close

    masks = validate_bars(bars, timeframe="1m", asset_class="stock", thresholds=THRESHOLDS)

    assert [flag_names(mask) for mask in masks] == [[], ["price_jump"], []]
    assert is_validated(masks[1])


def test_a_gap_open_counts_as_a_jump_and_a_move_within_the_threshold_does_not():
    bars = minute_bars(3)
    bars[1] = bars[1]._replace(o=70.0, h=101.0, l=69.0, c=100.0)  # opens 30% down, recovers
    bars[2] = bars[2]._replace(o=100.0, h=125.0, l=99.0, c=124.0)  # 24%: inside the threshold

    assert flags(bars) == [[], ["price_jump"], []]


def test_a_jump_on_a_split_day_is_not_flagged():
    daily = [
        Bar(MONDAY_NY, 400.0, 410.0, 390.0, 400.0, 1e6),
        Bar(MONDAY_NY + DAY, 100.0, 103.0, 99.0, 101.0, 4e6),
    ]

    without_split = flags(daily, timeframe="1d")
    with_split = flags(daily, timeframe="1d", split_days={date(2024, 3, 5)})

    assert without_split == [[], ["price_jump"]]
    assert with_split == [[], []]


def test_the_previous_close_comes_from_the_stored_bars_before_the_range():
    bars = minute_bars(1, price=150.0)

    assert flags(bars, prior=PriorBars(previous_close=100.0)) == [["price_jump"]]
    assert flags(bars, prior=PriorBars(previous_close=140.0)) == [[]]


def test_a_severe_bar_is_not_the_reference_for_the_next_jump():
    bars = minute_bars(3)
    bars[1] = bars[1]._replace(o=1000.0, h=1.0, l=1000.0, c=1000.0)  # garbage: inconsistent

    assert flags(bars) == [[], ["ohlc_inconsistent", "price_jump"], []]


def test_volume_spike_against_the_trailing_median_is_informational():
    volumes = [100.0, 120.0, 80.0, 100.0, 1500.0, 1000.0, 100.0]
    bars = [bar._replace(v=volume) for bar, volume in zip(minute_bars(7), volumes, strict=True)]

    masks = validate_bars(bars, timeframe="1m", asset_class="stock", thresholds=THRESHOLDS)

    # Window of 4: median(100, 120, 80, 100) = 100, so 1500 spikes; then median(120, 80,
    # 100, 1500) = 110 and 1000 is under 10 x 110.
    assert [flag_names(mask) for mask in masks] == [[], [], [], [], ["volume_spike"], [], []]
    assert is_validated(masks[4])


def test_no_volume_spike_before_the_window_is_full_or_on_a_zero_median():
    quiet = [bar._replace(v=0.0) for bar in minute_bars(5)]
    quiet[4] = quiet[4]._replace(v=1e9)
    early = minute_bars(3)
    early[2] = early[2]._replace(v=1e9)

    assert flags(quiet)[4] == []
    assert flags(early)[2] == []


def test_the_volume_window_continues_from_the_stored_bars():
    bars = minute_bars(1)
    bars[0] = bars[0]._replace(v=5000.0)

    assert flags(bars, prior=PriorBars(volumes=(100.0, 100.0, 100.0, 100.0))) == [["volume_spike"]]
    assert flags(bars, prior=PriorBars(volumes=(100.0, 100.0, 100.0))) == [[]]


@pytest.mark.parametrize(
    ("timeframe", "asset_class", "moment", "aligned"),
    [
        ("1m", "stock", datetime(2024, 3, 4, 14, 31, tzinfo=UTC), True),
        ("1m", "stock", datetime(2024, 3, 4, 14, 31, 30, tzinfo=UTC), False),
        ("5m", "crypto", datetime(2024, 3, 4, 0, 5, tzinfo=UTC), True),
        ("15m", "crypto", datetime(2024, 3, 4, 0, 5, tzinfo=UTC), False),
        # Stock session bars may start on the hour or on the 09:30 open's grid.
        ("1h", "stock", datetime(2024, 3, 4, 15, 0, tzinfo=UTC), True),
        ("1h", "stock", datetime(2024, 3, 4, 14, 30, tzinfo=UTC), True),
        ("1h", "stock", datetime(2024, 7, 1, 13, 30, tzinfo=UTC), True),
        ("1h", "crypto", datetime(2024, 3, 4, 14, 30, tzinfo=UTC), False),
        ("4h", "stock", datetime(2024, 3, 4, 18, 30, tzinfo=UTC), True),
        ("4h", "stock", datetime(2024, 7, 1, 17, 30, tzinfo=UTC), True),
        ("4h", "stock", datetime(2024, 3, 4, 15, 30, tzinfo=UTC), False),
        ("4h", "crypto", datetime(2024, 3, 4, 8, 0, tzinfo=UTC), True),
        ("4h", "crypto", datetime(2024, 3, 4, 6, 0, tzinfo=UTC), False),
        # Stock daily bars start at midnight New York, in winter and in summer.
        ("1d", "stock", datetime(2024, 3, 4, tzinfo=NEW_YORK), True),
        ("1d", "stock", datetime(2024, 7, 1, tzinfo=NEW_YORK), True),
        ("1d", "stock", datetime(2024, 3, 4, tzinfo=UTC), False),
        ("1d", "etf", datetime(2024, 3, 4, 9, 30, tzinfo=NEW_YORK), False),
        ("1d", "crypto", datetime(2024, 3, 4, tzinfo=UTC), True),
        ("1d", "crypto", datetime(2024, 3, 4, tzinfo=NEW_YORK), False),
        ("1w", "stock", datetime(2024, 3, 3, tzinfo=NEW_YORK), True),  # a Sunday
        ("1w", "stock", datetime(2024, 3, 4, tzinfo=NEW_YORK), False),  # a Monday
        ("1w", "crypto", datetime(2024, 3, 3, tzinfo=UTC), True),
        ("1w", "crypto", datetime(2024, 3, 3, tzinfo=NEW_YORK), False),
    ],
)
def test_misaligned_timestamps_are_severe(timeframe, asset_class, moment, aligned):
    bar = Bar(int(moment.timestamp() * 1000), 10.0, 11.0, 9.0, 10.5, 100.0)

    masks = validate_bars(
        [bar], timeframe=timeframe, asset_class=asset_class, thresholds=THRESHOLDS
    )

    assert flag_names(masks[0]) == ([] if aligned else ["misaligned_timestamp"])
    assert is_validated(masks[0]) is aligned


def test_unknown_timeframe_is_refused():
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        validate_bars([], timeframe="2m", asset_class="stock", thresholds=THRESHOLDS)


def test_thresholds_come_from_settings():
    settings = Settings.from_env(
        {
            "VALIDATION_MAX_JUMP_PCT": "12.5",
            "VALIDATION_VOLUME_SPIKE_FACTOR": "4",
            "VALIDATION_VOLUME_WINDOW": "30",
        }
    )

    assert Thresholds.from_settings(settings) == Thresholds(12.5, 4.0, 30)


def test_a_long_clean_series_has_no_flags_across_days_and_windows():
    # 5,000 crypto minute bars span four UTC days and hundreds of rolling volume windows.
    # Speed is measured by bench/bench_ingest.py, not here.
    bars = minute_bars(5_000)

    masks = validate_bars(
        bars, timeframe="1m", asset_class="crypto", thresholds=Thresholds.default()
    )

    assert masks.count(0) == 5_000


def volume_series(volumes: list[float], last: float) -> list[Bar]:
    return [
        bar._replace(v=volume)
        for bar, volume in zip(minute_bars(len(volumes) + 1), [*volumes, last], strict=True)
    ]


@pytest.mark.parametrize(
    ("window", "volumes", "last", "spike"),
    [
        # Even window: the median is the mean of the two middle values, (20 + 30) / 2 = 25.
        (4, [10.0, 20.0, 30.0, 1000.0], 249.0, False),
        (4, [10.0, 20.0, 30.0, 1000.0], 250.0, False),  # exactly 10x: not beyond it
        (4, [10.0, 20.0, 30.0, 1000.0], 251.0, True),
        # Odd window: the middle value, 20.
        (3, [10.0, 20.0, 1000.0], 200.0, False),
        (3, [10.0, 20.0, 1000.0], 201.0, True),
        # Fractional volumes (crypto): median (0.2 + 0.3) / 2 = 0.25.
        (4, [0.1, 0.2, 0.3, 0.4], 2.5, False),
        (4, [0.1, 0.2, 0.3, 0.4], 2.5001, True),
        # A zero median never spikes, however large the volume.
        (4, [0.0, 0.0, 0.0, 5.0], 1e12, False),
    ],
)
def test_volume_spike_boundaries(window, volumes, last, spike):
    thresholds = Thresholds(max_jump_pct=25.0, volume_spike_factor=10.0, volume_window=window)

    result = flags(volume_series(volumes, last), thresholds=thresholds)

    assert result[-1] == (["volume_spike"] if spike else [])
    assert result[:-1] == [[]] * len(volumes)


@pytest.mark.parametrize(
    ("o", "c", "jump"),
    [
        (100.0, 125.0, False),  # exactly 25%: not beyond the threshold
        (100.0, 125.01, True),
        (100.0, 75.0, False),
        (100.0, 74.99, True),
        (75.0, 100.0, False),
        (74.99, 100.0, True),  # the open gaps beyond it
        (125.01, 100.0, True),
    ],
)
def test_price_jump_boundaries(o, c, jump):
    bars = minute_bars(2)
    bars[1] = bars[1]._replace(o=o, h=max(o, c) + 1, l=min(o, c) - 1, c=c)

    assert flags(bars)[1] == (["price_jump"] if jump else [])


@pytest.mark.parametrize(
    ("timeframe", "asset_class", "moment", "offset_ms"),
    [
        ("1m", "crypto", datetime(2024, 3, 4, 0, 1, tzinfo=UTC), 1),
        ("1m", "stock", datetime(2024, 3, 4, 14, 31, tzinfo=UTC), 999),
        ("1h", "stock", datetime(2024, 3, 4, 14, 30, tzinfo=UTC), 1),
        # Seconds past New York's midnight are still hour 0, minute 0: misaligned all the same.
        ("1d", "stock", datetime(2024, 3, 4, tzinfo=NEW_YORK), 30_000),
        ("1d", "stock", datetime(2024, 3, 4, tzinfo=NEW_YORK), 1),
        ("1d", "crypto", datetime(2024, 3, 4, tzinfo=UTC), 1),
        ("1w", "stock", datetime(2024, 3, 3, tzinfo=NEW_YORK), 1),
        ("1w", "crypto", datetime(2024, 3, 3, tzinfo=UTC), 1),
    ],
)
def test_sub_minute_offsets_are_misaligned(timeframe, asset_class, moment, offset_ms):
    start = int(moment.timestamp() * 1000)
    on_grid = Bar(start, 10.0, 11.0, 9.0, 10.5, 100.0)
    off_grid = on_grid._replace(t=start + offset_ms)

    assert flags([on_grid], timeframe=timeframe, asset_class=asset_class) == [[]]
    assert flags([off_grid], timeframe=timeframe, asset_class=asset_class) == [
        ["misaligned_timestamp"]
    ]


@pytest.mark.parametrize(
    ("day", "aligned"),
    [
        (datetime(2024, 3, 3, tzinfo=UTC), True),  # Sunday
        (datetime(2024, 3, 4, tzinfo=UTC), False),  # Monday
        (datetime(2024, 3, 9, tzinfo=UTC), False),  # Saturday
        (datetime(2024, 3, 10, tzinfo=UTC), True),  # the next Sunday
    ],
)
def test_crypto_weeks_start_on_sunday_midnight_utc(day, aligned):
    bar = Bar(int(day.timestamp() * 1000), 10.0, 11.0, 9.0, 10.5, 100.0)

    assert flags([bar], timeframe="1w", asset_class="crypto") == (
        [[]] if aligned else [["misaligned_timestamp"]]
    )


@pytest.mark.parametrize(
    ("asset_class", "split_day", "exempt"),
    [
        # 2024-03-05 01:00 UTC is 2024-03-04 20:00 in New York: the stock's day is the 4th.
        ("stock", date(2024, 3, 4), True),
        ("stock", date(2024, 3, 5), False),
        # Crypto days are UTC days: the 5th.
        ("crypto", date(2024, 3, 5), True),
        ("crypto", date(2024, 3, 4), False),
    ],
)
def test_the_split_exemption_uses_the_market_s_own_day(asset_class, split_day, exempt):
    at = int(datetime(2024, 3, 5, 1, 0, tzinfo=UTC).timestamp() * 1000)
    bars = [
        Bar(at - 60 * MINUTE, 400.0, 401.0, 399.0, 400.0, 100.0),
        Bar(at, 100.0, 101.0, 99.0, 100.0, 100.0),
    ]

    result = flags(bars, timeframe="1h", asset_class=asset_class, split_days={split_day})

    assert result == [[], [] if exempt else ["price_jump"]]


@pytest.mark.parametrize("field", ["o", "h", "l", "c"])
def test_a_negative_price_in_any_field_is_non_positive(field):
    bar = Bar(MONDAY_UTC, 1.0, 1.0, 1.0, 1.0, 10.0)._replace(**{field: -1.0})

    assert "non_positive_price" in flags([bar])[0]


def test_a_flat_bar_is_consistent():
    assert flags([Bar(MONDAY_UTC, 5.0, 5.0, 5.0, 5.0, 10.0)]) == [[]]


def test_a_six_bar_window_takes_the_mean_of_its_two_middle_volumes():
    # Sorted window 10, 20, 30, 40, 50, 60: the middle pair is 30 and 40, the median 35.
    thresholds = Thresholds(max_jump_pct=25.0, volume_spike_factor=10.0, volume_window=6)
    volumes = [60.0, 10.0, 50.0, 20.0, 40.0, 30.0]

    assert flags(volume_series(volumes, 350.0), thresholds=thresholds)[-1] == []
    assert flags(volume_series(volumes, 351.0), thresholds=thresholds)[-1] == ["volume_spike"]


def test_zero_volumes_fill_the_window_and_negative_ones_never_enter_it():
    window_of_two = Thresholds(max_jump_pct=25.0, volume_spike_factor=10.0, volume_window=2)

    # 10 and 0: the median is 5, so 51 spikes.
    assert flags(volume_series([10.0, 0.0], 51.0), thresholds=window_of_two)[-1] == ["volume_spike"]
    # The -100 is refused and left out: the window is 10 and 10, so 101 spikes.
    result = flags(volume_series([10.0, -100.0, 10.0], 101.0), thresholds=window_of_two)
    assert result == [[], ["negative_volume"], [], ["volume_spike"]]


def test_an_informational_bar_is_the_reference_for_the_next_jump():
    bars = minute_bars(3)
    bars[1] = bars[1]._replace(o=100.0, h=131.0, l=99.0, c=130.0)  # a 30% jump: informational
    bars[2] = bars[2]._replace(o=130.0, h=131.0, l=129.0, c=130.0)  # flat against bar 1

    assert flags(bars) == [[], ["price_jump"], []]


def test_the_default_thresholds_are_the_documented_settings_defaults():
    # docs/DATA_QUALITY.md names these; config.py holds them.
    assert Thresholds.default() == Thresholds(
        max_jump_pct=25.0, volume_spike_factor=10.0, volume_window=20
    )


def test_thresholds_cannot_change_once_made():
    with pytest.raises(AttributeError):
        THRESHOLDS.max_jump_pct = 50.0  # type: ignore[misc]


def test_prior_bars_cannot_change_once_made():
    prior = PriorBars(previous_close=100.0, volumes=(1.0,))

    with pytest.raises(AttributeError):
        prior.previous_close = 50.0  # type: ignore[misc]


def test_each_flag_is_the_documented_bit_of_a_mask():
    # FLAG_NAMES's docstring: flag FLAG_NAMES[i] is bit 1 << i.
    assert [flag_names(1 << index) for index in range(len(FLAG_NAMES))] == [
        [name] for name in FLAG_NAMES
    ]


def test_fractional_volumes_are_volumes_and_a_fractional_negative_is_negative():
    # Four bars of half a unit fill the window (median 0.5): 6 is more than ten times that.
    assert flags(volume_series([0.5, 0.5, 0.5, 0.5], 6.0))[-1] == ["volume_spike"]
    assert flags(volume_series([-0.5], 1.0)) == [["negative_volume"], []]


def test_a_fractional_negative_volume_never_enters_the_window():
    # Without the -0.5 the window holds three volumes only: not full, so 20 is no spike.
    assert flags(volume_series([-0.5, 1.0, 1.0, 1.0], 20.0))[-1] == []


def test_only_the_last_window_of_the_stored_volumes_counts():
    bars = minute_bars(1)
    bars[0] = bars[0]._replace(v=5000.0)
    stored = (1.0e9, 1.0e9, 100.0, 100.0, 100.0, 100.0)  # the two oldest fall outside the window

    assert flags(bars, prior=PriorBars(volumes=stored)) == [["volume_spike"]]
