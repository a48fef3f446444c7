"""Shapes of the serverless backfill: the SQS message bodies and the rows the planner reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from chalicelib.market.tickers import SYMBOL_PATTERN, Market
from chalicelib.market.timeframes import Timeframe


class SymbolBackfill(
    msgspec.Struct,
    tag="symbol",
    tag_field="kind",
    forbid_unknown_fields=True,
    frozen=True,
    omit_defaults=True,
):
    """Bring one (symbol, timeframe) up to `window` with its own range requests.

    `request_id` marks a backfill an operator asked for (`POST …/symbols/{symbol}/backfill`):
    it runs whenever it arrives, even if the plan already completed the same identity today,
    because the operator asked for it now; re-running a backfill writes nothing new.
    """

    symbol: Annotated[str, Meta(pattern=SYMBOL_PATTERN)]
    timeframe: Timeframe
    window: date
    request_id: Annotated[str, Meta(max_length=200)] | None = None

    @property
    def identity(self) -> PlanIdentity:
        return PlanIdentity("symbol", self.symbol, self.timeframe, self.window)


class GroupedDailyBackfill(
    msgspec.Struct, tag="grouped_daily", tag_field="kind", forbid_unknown_fields=True, frozen=True
):
    """Write `window`'s daily bar of `symbols` from one grouped request for `market`.

    The symbols are named because only those the plan chose are safe to serve this way: a symbol
    with no bars, or a longer gap, needs its range requests first (a lone new bar would hide the
    hole before it). The identity leaves them out: a market date is queued once.
    """

    market: Market
    window: date
    symbols: list[Annotated[str, Meta(pattern=SYMBOL_PATTERN)]]
    timeframe: Literal["1d"] = "1d"

    @property
    def identity(self) -> PlanIdentity:
        return PlanIdentity("grouped_daily", self.market, self.timeframe, self.window)


BackfillMessage = SymbolBackfill | GroupedDailyBackfill


@dataclass(frozen=True, slots=True, order=True)
class PlanIdentity:
    """What makes two messages the same work: a repeated plan sends an identity once."""

    kind: str
    target: str
    timeframe: str
    window_date: date

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}/{self.timeframe}/{self.window_date.isoformat()}"


@dataclass(frozen=True, slots=True)
class PlanUnit:
    """One active (symbol, timeframe) and the start of its newest stored bar (None: no bars);
    `derived` when its bars are built from the symbol's finer stored ones, not fetched."""

    symbol: str
    asset_class: str
    timeframe: str
    newest: datetime | None
    derived: bool = False


@dataclass(frozen=True, slots=True)
class PlanMessageRow:
    """A `backfill_plan_messages` row as the worker reads it."""

    kind: str
    target: str
    timeframe: str
    window_date: date
    sent_at: datetime | None
    completed_at: datetime | None
    attempts: int


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BackfillMessage)


def encode_message(message: BackfillMessage) -> str:
    return _encoder.encode(message).decode()


def decode_message(body: str | bytes) -> BackfillMessage:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (wrong shape)."""
    message: BackfillMessage = _decoder.decode(body)
    return message
