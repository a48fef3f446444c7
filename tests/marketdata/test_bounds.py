"""`start` and `end` parse to the instants they admit, with one canonical spelling each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.errors import BadRequest
from chalicelib.marketdata.bounds import check_order, parse_end, parse_start


def test_a_date_covers_its_whole_utc_day() -> None:
    assert parse_start("2024-03-10").at == datetime(2024, 3, 10, tzinfo=UTC)
    assert parse_end("2024-03-10").at == datetime(2024, 3, 11, tzinfo=UTC)
    assert parse_end("2024-03-10").canonical == "2024-03-10"


def test_an_instant_is_included_at_both_ends() -> None:
    start = parse_start("2024-03-10T14:30:00.5+01:00")
    end = parse_end("2024-03-10T14:30:00.5+01:00")

    assert start.at == datetime(2024, 3, 10, 13, 30, 0, 500000, tzinfo=UTC)
    assert end.at == start.at + timedelta(microseconds=1)
    assert start.canonical == end.canonical == "2024-03-10T13:30:00.500000Z"


def test_the_last_representable_day_ends_at_the_far_future() -> None:
    assert parse_end("9999-12-31").at == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_epoch_ms_and_its_rfc3339_spelling_are_one_bound(ms: int) -> None:
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    spelled = instant.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"

    assert parse_start(str(ms)) == parse_start(spelled)
    assert parse_end(str(ms)) == parse_end(spelled)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "today",
        "2024-02-30",
        "2024-03-10T14:30:00",
        "2024-03-10T14:30Z",
        "-1",
        "1e3",
        "2024-03-10T14:30:00+25:00",
        "0001-01-01T00:00:00+01:00",
        "253402300800000",
        "１２３",
    ],
)
def test_anything_else_is_a_bad_request_naming_the_parameter(text: str) -> None:
    with pytest.raises(BadRequest, match="start must be") as raised:
        parse_start(text)

    assert raised.value.details == {"parameter": "start"}


def test_a_start_after_the_end_is_refused_but_equal_instants_are_one_bar() -> None:
    check_order(parse_start("1704412800000"), parse_end("1704412800000"))
    check_order(parse_start("2024-01-05"), parse_end("2024-01-05"))
    with pytest.raises(BadRequest, match="start must be on or before end"):
        check_order(parse_start("2024-01-06"), parse_end("2024-01-05"))
