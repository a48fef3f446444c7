from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from chalicelib.market.calendar import (
    NEW_YORK,
    daily_bar_start,
    expected_sessions,
    is_early_close,
    is_trading_day,
    market_date,
    market_zone,
    session_bounds_utc,
    session_close,
    trading_days,
)


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2024, 1, 1), "New Year's Day"),
        (date(2024, 1, 15), "Martin Luther King Jr. Day"),
        (date(2024, 2, 19), "Washington's Birthday"),
        (date(2024, 3, 29), "Good Friday"),
        (date(2024, 5, 27), "Memorial Day"),
        (date(2024, 6, 19), "Juneteenth"),
        (date(2024, 7, 4), "Independence Day"),
        (date(2024, 9, 2), "Labor Day"),
        (date(2024, 11, 28), "Thanksgiving"),
        (date(2024, 12, 25), "Christmas"),
        (date(2025, 1, 9), "day of mourning for President Carter"),
        (date(2024, 7, 6), "Saturday"),
        (date(2024, 7, 7), "Sunday"),
    ],
)
def test_no_session_on_holidays_and_weekends(day: date, reason: str) -> None:
    assert is_trading_day(day) is False, reason


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 3, 28),  # the Thursday before Good Friday
        date(2024, 7, 3),  # an early close is still a session
        date(2024, 7, 5),
        date(2024, 11, 29),  # the day after Thanksgiving (early close)
        date(2024, 12, 24),
        date(2021, 12, 31),  # New Year 2022 fell on a Saturday; NYSE does not observe it on Friday
    ],
)
def test_sessions_on_ordinary_and_early_close_days(day: date) -> None:
    assert is_trading_day(day) is True


def test_trading_days_skip_weekends_and_holidays_inclusive_of_both_ends() -> None:
    assert trading_days(date(2024, 3, 27), date(2024, 4, 2)) == [
        date(2024, 3, 27),
        date(2024, 3, 28),
        date(2024, 4, 1),
        date(2024, 4, 2),
    ]


def test_trading_days_across_a_year_boundary() -> None:
    assert trading_days(date(2024, 12, 30), date(2025, 1, 3)) == [
        date(2024, 12, 30),
        date(2024, 12, 31),
        date(2025, 1, 2),
        date(2025, 1, 3),
    ]


def test_trading_days_in_a_full_year() -> None:
    assert len(trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 252
    assert len(trading_days(date(2023, 1, 1), date(2023, 12, 31))) == 250


def test_trading_days_empty_when_reversed_or_only_a_holiday() -> None:
    assert trading_days(date(2024, 7, 5), date(2024, 7, 3)) == []
    assert trading_days(date(2024, 7, 4), date(2024, 7, 4)) == []
    assert trading_days(date(2024, 7, 5), date(2024, 7, 5)) == [date(2024, 7, 5)]


def test_session_bounds_in_winter_time() -> None:
    assert session_bounds_utc(date(2024, 1, 2)) == (
        datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
        datetime(2024, 1, 2, 21, 0, tzinfo=UTC),
    )


def test_session_bounds_in_summer_time() -> None:
    assert session_bounds_utc(date(2024, 7, 1)) == (
        datetime(2024, 7, 1, 13, 30, tzinfo=UTC),
        datetime(2024, 7, 1, 20, 0, tzinfo=UTC),
    )


def test_session_bounds_on_the_days_the_clocks_change() -> None:
    # 2024-03-10 and 2024-11-03 are Sundays; the Mondays after are the first sessions on the new
    # offset, and the Fridays before are the last on the old one.
    assert session_bounds_utc(date(2024, 3, 8))[0] == datetime(2024, 3, 8, 14, 30, tzinfo=UTC)
    assert session_bounds_utc(date(2024, 3, 11))[0] == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)
    assert session_bounds_utc(date(2024, 11, 1))[1] == datetime(2024, 11, 1, 20, 0, tzinfo=UTC)
    assert session_bounds_utc(date(2024, 11, 4))[1] == datetime(2024, 11, 4, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2018, 7, 3), "Tuesday before Independence Day"),
        (date(2019, 7, 3), "Wednesday before Independence Day"),
        (date(2023, 7, 3), "Monday before Independence Day"),
        (date(2024, 7, 3), "Wednesday before Independence Day"),
        (date(2025, 7, 3), "Thursday before Independence Day"),
        (date(2024, 11, 29), "day after Thanksgiving"),
        (date(2025, 11, 28), "day after Thanksgiving"),
        (date(2026, 11, 27), "day after Thanksgiving"),
        (date(2024, 12, 24), "Christmas Eve on a Tuesday"),
        (date(2025, 12, 24), "Christmas Eve on a Wednesday"),
        (date(2026, 12, 24), "Christmas Eve on a Thursday"),
    ],
)
def test_early_closes(day: date, reason: str) -> None:
    assert is_trading_day(day) is True, reason
    assert is_early_close(day) is True, reason
    assert session_close(day) == time(13, 0), reason


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2020, 7, 3), "Friday, the observed Independence Day: a holiday"),
        (date(2021, 7, 2), "Friday before a Sunday Independence Day: a full session"),
        (date(2021, 7, 3), "Saturday"),
        (date(2021, 12, 24), "Friday, the observed Christmas: a holiday"),
        (date(2026, 7, 3), "Friday, the observed Independence Day: a holiday"),
        (date(2024, 11, 28), "Thanksgiving itself: a holiday"),
        (date(2024, 11, 22), "the Friday a week before the day after Thanksgiving"),
        (date(2024, 12, 23), "the day before Christmas Eve"),
        (date(2024, 12, 31), "New Year's Eve closes at 16:00"),
        (date(2024, 7, 5), "the Friday after Independence Day"),
    ],
)
def test_no_early_close(day: date, reason: str) -> None:
    assert is_early_close(day) is False, reason
    assert session_close(day) == time(16, 0), reason


def test_early_closes_of_whole_years() -> None:
    def early(year: int) -> list[date]:
        return [
            day for day in trading_days(date(year, 1, 1), date(year, 12, 31)) if is_early_close(day)
        ]

    assert early(2020) == [date(2020, 11, 27), date(2020, 12, 24)]
    assert early(2021) == [date(2021, 11, 26)]
    assert early(2024) == [date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24)]
    assert early(2026) == [date(2026, 11, 27), date(2026, 12, 24)]


def test_session_bounds_of_an_early_close_in_winter_time() -> None:
    assert session_bounds_utc(date(2024, 11, 29)) == (
        datetime(2024, 11, 29, 14, 30, tzinfo=UTC),
        datetime(2024, 11, 29, 18, 0, tzinfo=UTC),
    )


def test_session_bounds_of_an_early_close_in_summer_time() -> None:
    assert session_bounds_utc(date(2024, 7, 3)) == (
        datetime(2024, 7, 3, 13, 30, tzinfo=UTC),
        datetime(2024, 7, 3, 17, 0, tzinfo=UTC),
    )


def test_session_bounds_are_utc_aware() -> None:
    opens, closes = session_bounds_utc(date(2024, 1, 2))
    assert opens.tzinfo is UTC
    assert closes.tzinfo is UTC


def test_expected_sessions_for_stocks_and_etfs_follow_nyse() -> None:
    expected = [date(2024, 11, 27), date(2024, 11, 29), date(2024, 12, 2)]
    assert expected_sessions("stock", date(2024, 11, 27), date(2024, 12, 2)) == expected
    assert expected_sessions("etf", date(2024, 11, 27), date(2024, 12, 2)) == expected


def test_expected_sessions_for_crypto_are_every_day() -> None:
    assert expected_sessions("crypto", date(2024, 11, 27), date(2024, 12, 2)) == [
        date(2024, 11, 27),
        date(2024, 11, 28),
        date(2024, 11, 29),
        date(2024, 11, 30),
        date(2024, 12, 1),
        date(2024, 12, 2),
    ]
    assert expected_sessions("crypto", date(2024, 12, 2), date(2024, 11, 27)) == []


def test_expected_sessions_reject_an_unknown_asset_class() -> None:
    with pytest.raises(ValueError, match="unknown asset class 'forex'"):
        expected_sessions("forex", date(2024, 1, 1), date(2024, 1, 2))


@pytest.mark.parametrize(
    ("moment", "asset_class", "day"),
    [
        # 02:30 UTC on a Tuesday is still Monday evening in New York.
        (datetime(2024, 3, 5, 2, 30, tzinfo=UTC), "stock", date(2024, 3, 4)),
        (datetime(2024, 3, 5, 2, 30, tzinfo=UTC), "etf", date(2024, 3, 4)),
        (datetime(2024, 3, 5, 2, 30, tzinfo=UTC), "crypto", date(2024, 3, 5)),
        # A stock's daily bar starts at midnight New York: 04:00 UTC in summer.
        (datetime(2024, 7, 1, 4, 0, tzinfo=UTC), "stock", date(2024, 7, 1)),
        (datetime(2024, 7, 1, 3, 59, tzinfo=UTC), "stock", date(2024, 6, 30)),
    ],
)
def test_the_market_date_is_new_york_s_for_stocks_and_utc_s_for_crypto(
    moment: datetime, asset_class: str, day: date
) -> None:
    assert market_date(moment, asset_class) == day
    assert str(market_zone(asset_class)) == ("UTC" if asset_class == "crypto" else NEW_YORK.key)


def test_a_daily_bar_starts_at_the_market_s_midnight() -> None:
    assert daily_bar_start(date(2024, 7, 1), "stocks") == datetime(2024, 7, 1, 4, tzinfo=UTC)
    assert daily_bar_start(date(2024, 12, 2), "stocks") == datetime(2024, 12, 2, 5, tzinfo=UTC)
    assert daily_bar_start(date(2024, 7, 1), "crypto") == datetime(2024, 7, 1, tzinfo=UTC)
