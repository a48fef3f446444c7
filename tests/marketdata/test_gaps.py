"""Gap counting against the NYSE calendar (stocks, ETFs) and every UTC day (crypto)."""

from __future__ import annotations

from datetime import date, timedelta

from chalicelib.marketdata.gaps import count_gaps, daily_bar_zone, missing_sessions


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def test_no_bars_no_gaps() -> None:
    assert count_gaps("stock", []) == 0


def test_stock_week_with_holiday_and_weekend_has_no_gap() -> None:
    # 2024-01-12 (Fri) .. 2024-01-17 (Wed): Sat, Sun and MLK day (Mon 15th) are not sessions.
    present = [date(2024, 1, 12), date(2024, 1, 16), date(2024, 1, 17)]

    assert count_gaps("stock", present) == 0


def test_stock_missing_session_is_a_gap() -> None:
    present = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 5)]

    assert missing_sessions("etf", present) == [date(2024, 1, 4)]


def test_crypto_expects_weekends_and_holidays() -> None:
    present = [d for d in days(date(2024, 12, 20), date(2024, 12, 31)) if d.weekday() < 5]

    # Two weekends inside the range: 21-22 and 28-29 December; Christmas is a day like any.
    assert count_gaps("crypto", present) == 4


def test_days_outside_the_stored_range_are_not_gaps() -> None:
    present = [date(2024, 3, 4), date(2024, 3, 5)]

    assert count_gaps("stock", present) == 0


def test_zone_of_daily_bars() -> None:
    assert daily_bar_zone("stock") == "America/New_York"
    assert daily_bar_zone("crypto") == "UTC"
