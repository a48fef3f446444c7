"""Shapes of the backfill: what is backfilled, what a run reports, and the rows it reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

RunOutcome = Literal["completed", "failed"]
StoredPrices = Literal["split_adjusted", "unadjusted"]


class SymbolRef(Protocol):
    """Any tracked-symbol row will do: the backfill needs only these two attributes."""

    @property
    def symbol(self) -> str: ...
    @property
    def asset_class(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TrackedSymbol:
    """A `tracked_symbols` row as the backfill reads it."""

    symbol: str
    asset_class: str
    timeframes: list[str]
    active: bool


@dataclass(frozen=True, slots=True)
class BackfillUnit:
    """One (symbol, timeframe): the unit that runs, succeeds and fails on its own.
    `derived_from` names the stored timeframe its bars are built from (no provider request);
    None when they are fetched."""

    symbol: str
    asset_class: str
    timeframe: str
    derived_from: str | None = None


@dataclass(frozen=True, slots=True)
class BackfillState:
    """A `backfill_state` row: where one (symbol, timeframe) stands."""

    symbol: str
    timeframe: str
    status: str
    last_backfill: datetime | None
    last_error: str | None
    last_run_id: int | None
    # Bars stored before migration 0009 are split-adjusted until their unit is re-fetched.
    stored_prices: StoredPrices = "unadjusted"


@dataclass(frozen=True, slots=True)
class BarExtent:
    """The oldest and newest stored bar of one (symbol, timeframe); both None when empty."""

    oldest: datetime | None
    newest: datetime | None


@dataclass(frozen=True, slots=True)
class RecentBar:
    """A stored bar's start, close and volume, the context validation needs before a fetched
    range."""

    time: datetime
    close: float
    volume: float
    validated: bool


@dataclass(frozen=True, slots=True)
class StoredSplit:
    """A `splits` row of one symbol: `split_to` shares for every `split_from`."""

    execution_date: date
    split_from: float
    split_to: float


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What one (symbol, timeframe) run did. `error` is readable and never holds a secret."""

    symbol: str
    timeframe: str
    status: RunOutcome
    bars_written: int
    provider_requests: int
    error: str | None
    started_at: datetime
    finished_at: datetime
    run_id: int | None = None
    range_start: date | None = None
    range_end: date | None = None
    bars_fetched: int = 0
    full: bool = False

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()
