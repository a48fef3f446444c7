"""Shapes of tracked symbols, and the one normaliser every entry point uses.

`normalize_symbol` is how a symbol typed by a person or a client (`btc-usd`, `X:BTCUSD`,
`brk.b`) becomes the warehouse's key (`BTC`, `BRK.B`) and asset class. The API, the CLI and
the backfill all go through it, so one symbol can never be stored under two spellings.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from chalicelib.errors import BadRequest
from chalicelib.marketdata.models import (
    DEFAULT_TIMEFRAMES,
    TIMEFRAMES,
    SymbolSummary,
    Timeframe,
    UtcDateTime,
)

ASSET_CLASSES = ("stock", "etf", "crypto")
AssetClass = Literal["stock", "etf", "crypto"]

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9.]{0,14}$"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
# Longer than any spelling we accept (`X:` + 15 + `USD`); checked first so a pasted paragraph
# is rejected without any further work and never echoed back in full.
_MAX_RAW_LENGTH = 24

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
    if len(text) > _MAX_RAW_LENGTH:
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


# --- Requests -------------------------------------------------------------------------------

TimeframeList = Annotated[
    list[Timeframe],
    Meta(
        min_length=1,
        max_length=len(TIMEFRAMES),
        description=f"Bar sizes to keep, any of {', '.join(TIMEFRAMES)}.",
    ),
]
SymbolText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=_MAX_RAW_LENGTH,
        description="Ticker: `AAPL`, `BRK.B`; crypto as `BTC`, `BTC-USD` or `X:BTCUSD`.",
    ),
]


class AddSymbolRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Start tracking a symbol; its first backfill fetches each timeframe's default depth."""

    symbol: SymbolText
    asset_class: AssetClass
    timeframes: TimeframeList = msgspec.field(default_factory=lambda: list(DEFAULT_TIMEFRAMES))


class UpdateSymbolRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Change a tracked symbol; fields left out keep their value. `active: true` reactivates."""

    active: bool | None = None
    asset_class: AssetClass | None = None
    timeframes: TimeframeList | None = None


class SymbolListQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Filters for the admin symbol list; both optional."""

    active: Annotated[bool | None, Meta(description="Only active (or inactive) symbols.")] = None
    asset_class: Annotated[AssetClass | None, Meta(description="Only this asset class.")] = None


# --- Rows and responses -----------------------------------------------------------------------


class TrackedSymbol(msgspec.Struct, frozen=True):
    """A `tracked_symbols` row."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    active: bool
    backfill_status: str
    last_backfill: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class TimeframeCounts(msgspec.Struct, frozen=True):
    """Stored bars of one (symbol, timeframe): how many, how many validated, first and last."""

    timeframe: str
    record_count: int
    validated_count: int
    first: datetime | None
    last: datetime | None


class DateRange(msgspec.Struct, frozen=True):
    """Start times of the first and last stored bar (UTC), or null when there are none."""

    first: UtcDateTime | None
    last: UtcDateTime | None


class TimeframeStats(msgspec.Struct, frozen=True):
    """Quality of one timeframe's stored bars.

    `validation_rate` is validated / all (null with no bars); `gaps_detected` counts expected
    daily sessions inside the stored range with no `1d` bar, and `missing_sessions` lists them
    (oldest first), so both are null for other timeframes.
    """

    record_count: int
    date_range: DateRange
    validation_rate: float | None
    gaps_detected: int | None
    missing_sessions: list[date] | None = None


class SymbolOut(msgspec.Struct, frozen=True):
    """A tracked symbol as the admin endpoints show it."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    active: bool
    backfill_status: str
    last_backfill: UtcDateTime | None
    last_error: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def from_row(cls, row: TrackedSymbol) -> SymbolOut:
        return cls(
            symbol=row.symbol,
            asset_class=row.asset_class,
            timeframes=row.timeframes,
            active=row.active,
            backfill_status=row.backfill_status,
            last_backfill=row.last_backfill,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class SymbolDetail(SymbolOut, frozen=True):
    """A tracked symbol with statistics per timeframe (tracked or holding bars)."""

    stats: dict[str, TimeframeStats] = msgspec.field(default_factory=dict)


class SymbolSummaryDetail(SymbolSummary, frozen=True):
    """An active symbol as readers see it, with the statistics of each timeframe (tracked or
    holding bars)."""

    stats: dict[str, TimeframeStats] = msgspec.field(default_factory=dict)


class SymbolList(msgspec.Struct, frozen=True):
    symbols: list[SymbolOut]
    count: int
