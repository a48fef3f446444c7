"""Bar sources: the grouped-daily source answers as the range endpoint would, for the window
asked, and both it and the Polygon client are what `backfill_one` takes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chalicelib.backfill.sources import GroupedDaySource
from chalicelib.polygon import PolygonClient
from devtools.polygon_sim import PolygonSimulator
from tests.backfill.conftest import SIM_API_KEY

FRIDAY = date(2024, 6, 14)
FRIDAY_START_MS = int(datetime(2024, 6, 14, 4, tzinfo=UTC).timestamp() * 1000)  # 00:00 New York


@pytest.fixture
def grouped(polygon: PolygonClient) -> GroupedDaySource:
    rows = polygon.grouped_daily("stocks", FRIDAY, adjusted=False)
    return GroupedDaySource(polygon, "stocks", FRIDAY, rows)


def test_the_day_s_bar_is_the_range_endpoint_s_bar(
    grouped: GroupedDaySource, polygon: PolygonClient
) -> None:
    (pages,) = [
        list(grouped.aggregates("AAPL", 1, "day", date(2024, 6, 13), FRIDAY, adjusted=False))
    ]
    (ranged,) = polygon.aggregates("AAPL", 1, "day", FRIDAY, FRIDAY, adjusted=False)

    assert pages == [ranged]
    assert ranged[0].t == FRIDAY_START_MS


def test_a_window_without_the_day_or_an_unknown_ticker_gets_no_bar(
    grouped: GroupedDaySource,
) -> None:
    def day_bars(ticker: str, start: date, end: date) -> list[list[object]]:
        return list(grouped.aggregates(ticker, 1, "day", start, end, adjusted=False))

    assert day_bars("AAPL", date(2024, 6, 10), date(2024, 6, 13)) == [[]]
    assert day_bars("AAPL", date(2024, 6, 17), date(2024, 6, 18)) == [[]]
    assert day_bars("NOPE", FRIDAY, FRIDAY) == [[]]


def test_only_daily_bars_are_served(grouped: GroupedDaySource) -> None:
    with pytest.raises(ValueError, match="daily bars only"):
        list(grouped.aggregates("AAPL", 1, "hour", FRIDAY, FRIDAY, adjusted=False))


def test_prices_of_the_other_kind_are_refused(grouped: GroupedDaySource) -> None:
    with pytest.raises(ValueError, match="holds traded prices only"):
        list(grouped.aggregates("AAPL", 1, "day", FRIDAY, FRIDAY, adjusted=True))


def test_splits_come_from_one_bulk_lookup_per_date(
    grouped: GroupedDaySource, polygon: PolygonClient, simulator: PolygonSimulator
) -> None:
    simulator.add_split("AAPL", date(2024, 6, 10), 1, 4)
    simulator.add_split("MSFT", date(2024, 6, 11), 1, 2)
    simulator.clear_log()
    before = grouped.request_count

    aapl = grouped.splits("AAPL", since=date(2024, 6, 1))
    msft = grouped.splits("MSFT", since=date(2024, 6, 1))

    assert [(s.ticker, s.execution_date) for s in aapl] == [("AAPL", date(2024, 6, 10))]
    assert [(s.ticker, s.execution_date) for s in msft] == [("MSFT", date(2024, 6, 11))]
    assert [r.query.get("ticker") for r in simulator.requests] == [None]
    assert grouped.request_count == polygon.request_count == before + 1


def test_secrets_are_masked_by_the_client_that_holds_them(grouped: GroupedDaySource) -> None:
    assert grouped.redact(f"key {SIM_API_KEY} in ?apiKey=x") == "key *** in ?apiKey=***"
