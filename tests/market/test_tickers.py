"""The one symbol normaliser, and the way from a stored symbol to Polygon's ticker and back."""

from __future__ import annotations

import pytest

from chalicelib.errors import BadRequest
from chalicelib.market.tickers import (
    normalize_symbol,
    provider_ticker,
    symbol_from_provider_ticker,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BTC", ("BTC", "crypto")),
        ("btc", ("BTC", "crypto")),
        ("BTC-USD", ("BTC", "crypto")),
        ("btc-usd", ("BTC", "crypto")),
        ("X:BTCUSD", ("BTC", "crypto")),
        ("x:ethusd", ("ETH", "crypto")),
        ("BRK.B", ("BRK.B", "stock")),
        (" aapl ", ("AAPL", "stock")),
    ],
)
def test_spellings_normalise(raw: str, expected: tuple[str, str]) -> None:
    assert normalize_symbol(raw) == expected


def test_explicit_asset_class_wins_for_a_plain_symbol() -> None:
    assert normalize_symbol("spy", "etf") == ("SPY", "etf")
    assert normalize_symbol("BTC", "etf") == ("BTC", "etf")


def test_unknown_crypto_base_needs_the_asset_class() -> None:
    assert normalize_symbol("PYTH", "crypto") == ("PYTH", "crypto")
    assert normalize_symbol("PYTHUSD", "crypto") == ("PYTH", "crypto")
    assert normalize_symbol("PYTH-USD") == ("PYTH", "crypto")


def test_crypto_pair_with_another_asset_class_is_refused() -> None:
    with pytest.raises(BadRequest, match="crypto pair"):
        normalize_symbol("X:BTCUSD", "stock")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "A" * 16,
        "A" * 50,
        "../x",
        "AAPL;DROP TABLE bars",
        ".AAPL",
        "X:BTC",
        "-USD",
        "AA PL",
        "ÄAPL",
    ],
)
def test_bad_symbols_are_refused(raw: str) -> None:
    with pytest.raises(BadRequest):
        normalize_symbol(raw)


def test_unknown_asset_class_is_refused() -> None:
    with pytest.raises(BadRequest, match="asset_class"):
        normalize_symbol("AAPL", "bond")


@pytest.mark.parametrize(
    ("symbol", "asset_class", "expected"),
    [
        ("BTC", "crypto", "X:BTCUSD"),
        ("BTC-USD", "crypto", "X:BTCUSD"),
        ("eth", "crypto", "X:ETHUSD"),
        ("X:SOLUSD", "crypto", "X:SOLUSD"),
        ("BRK.B", "stock", "BRK.B"),
        ("SPY", "etf", "SPY"),
    ],
)
def test_provider_ticker(symbol: str, asset_class: str, expected: str) -> None:
    assert provider_ticker(symbol, asset_class) == expected


def test_symbol_from_provider_ticker() -> None:
    assert symbol_from_provider_ticker("X:BTCUSD") == "BTC"
    assert symbol_from_provider_ticker("BRK.B") == "BRK.B"
