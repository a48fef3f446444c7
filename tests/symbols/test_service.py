"""Symbol rules below HTTP: the provider check switch, timeframe order, detail statistics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from chalicelib import db
from chalicelib.errors import Conflict, NotFound
from chalicelib.symbols import service
from chalicelib.symbols.models import AddSymbolRequest, UpdateSymbolRequest
from tests.factories import daily_times, make_bars, make_symbol


def refuse(symbol: str, asset_class: str) -> None:
    raise AssertionError(f"the provider was asked about {symbol}")


def test_add_skips_the_provider_when_the_check_is_off(
    pinned_db: db.Connection, set_env: Callable[..., None]
) -> None:
    # The HTTP client re-applies .chalice/config.json's environment on every request, so the
    # switch is exercised here, below HTTP.
    set_env(SYMBOL_CHECK_ON_ADD="false", POLYGON_API_KEY=None)

    row = service.add_symbol(
        pinned_db, AddSymbolRequest(symbol="zzzzq", asset_class="etf"), check_ticker=refuse
    )

    assert (row.symbol, row.asset_class, row.timeframes) == ("ZZZZQ", "etf", ["1d"])


def test_add_asks_the_provider_when_the_check_is_on(
    pinned_db: db.Connection, set_env: Callable[..., None]
) -> None:
    set_env(SYMBOL_CHECK_ON_ADD="true")
    asked: list[tuple[str, str]] = []

    service.add_symbol(
        pinned_db,
        AddSymbolRequest(symbol="X:SOLUSD", asset_class="crypto", timeframes=["1w", "1m"]),
        check_ticker=lambda symbol, asset_class: asked.append((symbol, asset_class)),
    )

    assert asked == [("SOL", "crypto")]
    row = pinned_db.execute("SELECT timeframes FROM tracked_symbols WHERE symbol = 'SOL'")
    assert row.fetchone() == (["1m", "1w"],)


def test_add_duplicate_raises_conflict(pinned_db: db.Connection) -> None:
    make_symbol(pinned_db, "AAPL")

    with pytest.raises(Conflict, match="already tracked"):
        service.add_symbol(
            pinned_db, AddSymbolRequest(symbol="aapl", asset_class="stock"), check_ticker=refuse
        )


def test_updated_at_moves_only_when_something_changed(pinned_db: db.Connection) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    make_symbol(pinned_db, "AAPL", updated_at=long_ago)

    unchanged = service.update_symbol(pinned_db, "AAPL", UpdateSymbolRequest(active=True))
    changed = service.update_symbol(pinned_db, "AAPL", UpdateSymbolRequest(timeframes=["1h"]))

    assert unchanged.updated_at == long_ago
    assert changed.updated_at > long_ago


def test_detail_lists_timeframes_that_hold_bars_but_are_no_longer_tracked(
    pinned_db: db.Connection,
) -> None:
    make_symbol(pinned_db, "AAPL", timeframes=["1d"])
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 1), 2), timeframe="1w")

    detail = service.get_symbol_detail(pinned_db, "AAPL")

    assert list(detail.stats) == ["1d", "1w"]
    assert detail.stats["1w"].record_count == 2
    assert detail.stats["1w"].gaps_detected is None
    assert detail.stats["1d"].gaps_detected == 0


def test_resolve_unknown_symbol_is_not_found(pinned_db: db.Connection) -> None:
    with pytest.raises(NotFound):
        service.resolve_symbol(pinned_db, "btc-usd")
