"""How symbols are spelled: the warehouse's key for a symbol typed by a person or a client, its
asset class, the market it trades in, and the ticker Polygon knows it by.

`normalize_symbol` is how a symbol typed by a person or a client (`btc-usd`, `X:BTCUSD`,
`brk.b`) becomes the warehouse's key (`BTC`, `BRK.B`) and asset class. The API, the CLI and
the backfill all go through it, so one symbol can never be stored under two spellings.
`provider_ticker` is the way back, from the key to Polygon's ticker (`X:BTCUSD`).
"""

from __future__ import annotations

import re
from typing import Literal

from chalicelib.errors import BadRequest

ASSET_CLASSES = ("stock", "etf", "crypto")
AssetClass = Literal["stock", "etf", "crypto"]

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9.]{0,14}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
# Longer than any spelling we accept (`X:` + 15 + `USD`); checked first so a pasted paragraph
# is rejected without any further work and never echoed back in full.
MAX_RAW_SYMBOL_LENGTH = 24

KNOWN_CRYPTO: frozenset[str] = frozenset(
    {
        "BTC",
        "ETH",
        "SOL",
        "XRP",
        "DOGE",
        "ADA",
        "AVAX",
        "DOT",
        "LINK",
        "LTC",
        "BCH",
        "XLM",
        "UNI",
        "ATOM",
        "MATIC",
        "POL",
        "SHIB",
        "ETC",
        "FIL",
        "AAVE",
        "ALGO",
        "NEAR",
        "APT",
        "ARB",
        "OP",
        "SUI",
        "USDC",
        "USDT",
        "DAI",
        "PEPE",
        "HBAR",
        "ICP",
        "MKR",
        "XTZ",
    }
)
"""Base currencies recognised as crypto when no asset class is given (Polygon's `X:…USD`
pairs). Any other crypto base can still be tracked by passing `asset_class="crypto"`."""

_PROVIDER_CRYPTO_PREFIX = "X:"
_QUOTE_CURRENCY = "USD"


def normalize_symbol(raw: str, asset_class: str | None = None) -> tuple[str, str]:
    """Return the stored `(symbol, asset_class)` for a user-typed symbol, or raise BadRequest.

    Upper-cases and trims; `BTC`, `btc`, `BTC-USD` and `X:BTCUSD` all become (`BTC`,
    `crypto`); `BRK.B` stays a stock. An explicit `asset_class` wins for a plain symbol (NYSE
    lists an ETF called `BTC`), but a crypto-only spelling with another class is refused.
    """
    if asset_class is not None and asset_class not in ASSET_CLASSES:
        raise BadRequest(
            f"asset_class must be one of {', '.join(ASSET_CLASSES)}",
            details={"asset_class": str(asset_class)[:40]},
        )
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest("symbol is required", details={"symbol": ""})
    text = raw.strip().upper()
    if len(text) > MAX_RAW_SYMBOL_LENGTH:
        raise BadRequest(
            "symbol is too long (at most 15 characters)", details={"symbol": text[:40]}
        )

    base, crypto_spelling = _crypto_base(text)
    if crypto_spelling:
        if asset_class not in (None, "crypto"):
            raise BadRequest(
                f"{text} is a crypto pair but asset_class is {asset_class}",
                details={"symbol": text, "asset_class": asset_class},
            )
        symbol, resolved = base, "crypto"
    elif asset_class == "crypto" and text.endswith(_QUOTE_CURRENCY) and len(text) > 3:
        # `BTCUSD` with crypto asked for explicitly: the pair, tracked by its base.
        symbol, resolved = text.removesuffix(_QUOTE_CURRENCY), "crypto"
    else:
        symbol = text
        resolved = asset_class or ("crypto" if text in KNOWN_CRYPTO else "stock")

    if not _SYMBOL_RE.fullmatch(symbol):
        raise BadRequest(
            "symbol must be 1-15 letters, digits or dots, starting with a letter or digit "
            "(crypto may be written BTC, BTC-USD or X:BTCUSD)",
            details={"symbol": text},
        )
    return symbol, resolved


def _crypto_base(text: str) -> tuple[str, bool]:
    """(`BTC`, True) for `X:BTCUSD` and `BTC-USD`; (text, False) for anything else."""
    if text.startswith(_PROVIDER_CRYPTO_PREFIX):
        pair = text.removeprefix(_PROVIDER_CRYPTO_PREFIX)
        if pair.endswith(_QUOTE_CURRENCY) and len(pair) > len(_QUOTE_CURRENCY):
            return pair.removesuffix(_QUOTE_CURRENCY), True
        return text, False  # fails the pattern below: `X:` with no USD quote
    suffix = "-" + _QUOTE_CURRENCY
    if text.endswith(suffix) and len(text) > len(suffix):
        return text.removesuffix(suffix), True
    return text, False


Market = Literal["stocks", "crypto"]
"""A market of Polygon's grouped-daily endpoint, and of the planner's schedules."""

MARKET_ASSET_CLASSES: dict[Market, tuple[str, ...]] = {
    "stocks": ("stock", "etf"),
    "crypto": ("crypto",),
}
"""Asset classes each market answers for (US stocks include ETFs)."""


def provider_ticker(symbol: str, asset_class: str) -> str:
    """The ticker Polygon knows a tracked symbol by: crypto "BTC", "BTC-USD" or "X:BTCUSD" is
    "X:BTCUSD"; stocks and ETFs are unchanged ("BRK.B")."""
    if asset_class != "crypto":
        return symbol
    normalized = symbol.strip().upper()
    if normalized.startswith(_PROVIDER_CRYPTO_PREFIX):
        return normalized
    base = normalized.removesuffix(f"-{_QUOTE_CURRENCY}").removesuffix(f"/{_QUOTE_CURRENCY}")
    return f"{_PROVIDER_CRYPTO_PREFIX}{base}{_QUOTE_CURRENCY}"


def symbol_from_provider_ticker(ticker: str) -> str:
    """The tracked symbol for a Polygon ticker: "X:BTCUSD" is "BTC"; stocks are unchanged."""
    if ticker.startswith(_PROVIDER_CRYPTO_PREFIX) and ticker.endswith(_QUOTE_CURRENCY):
        return ticker[len(_PROVIDER_CRYPTO_PREFIX) : -len(_QUOTE_CURRENCY)]
    return ticker
