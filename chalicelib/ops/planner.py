"""The backfill planner: decide what each market needs after its trading day and queue it.

Per market and run it reads every active (symbol, timeframe) with its newest stored bar, then
chooses for the daily bars between one range request per symbol and one grouped-daily request per
missing market date, whichever costs fewer provider calls. Intraday and weekly bars
always take range requests, except those built from the symbol's finer stored bars, which cost
no provider call. Every message has an identity (kind, target, timeframe, window), and
an identity is queued once, so a second plan of the same day queues nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import ServiceUnavailable
from chalicelib.market.calendar import NEW_YORK, expected_sessions, is_trading_day, market_date
from chalicelib.market.calendar import session_bounds_utc as _session_bounds_utc
from chalicelib.market.tickers import MARKET_ASSET_CLASSES, Market
from chalicelib.market.timeframes import DAILY, Timeframe
from chalicelib.ops import queue, repository
from chalicelib.ops.models import (
    BackfillMessage,
    GroupedDailyBackfill,
    PlanIdentity,
    PlanUnit,
    SymbolBackfill,
    encode_message,
)
from chalicelib.ops.observability import COUNT, MILLISECONDS, log_event

# Polygon's daily aggregates settle a little after the close; a plan before then targets the
# session before.
CLOSE_SETTLE = timedelta(minutes=15)
# How far back to look for the latest finished session (the longest NYSE closure is 4 days).
_SESSION_LOOKBACK_DAYS = 10
# Sent messages are recorded as accepted this many at a time, so a planner that dies half-way
# re-sends at most this many on its next run.
_MARK_SENT_EVERY = 500


def target_date(market: Market, now: datetime) -> date | None:
    """The market date a plan at `now` brings data up to: the latest NYSE session that closed
    (and settled) for stocks, the last complete UTC day for crypto."""
    if market == "crypto":
        return now.astimezone(UTC).date() - timedelta(days=1)
    day = now.astimezone(NEW_YORK).date()
    for _ in range(_SESSION_LOOKBACK_DAYS):
        if is_trading_day(day) and _session_bounds_utc(day)[1] + CLOSE_SETTLE <= now:
            return day
        day -= timedelta(days=1)
    return None


def missing_days(unit: PlanUnit, target: date) -> list[date] | None:
    """Market dates after the unit's newest bar up to `target` that should carry a daily bar;
    None when the unit has no bars (its first backfill reaches back its full depth)."""
    if unit.newest is None:
        return None
    newest_day = market_date(unit.newest, unit.asset_class)
    return expected_sessions(unit.asset_class, newest_day + timedelta(days=1), target)


@dataclass(slots=True)
class MarketPlan:
    """What one market needs at one target date, and the provider requests it will cost."""

    market: Market
    target: date | None
    units: int = 0
    up_to_date: int = 0
    symbol_messages: list[SymbolBackfill] = field(default_factory=list)
    # Of those, the messages of units built from stored bars: no provider request.
    derived_messages: int = 0
    # Market date -> the symbols its grouped request serves.
    grouped: dict[date, list[str]] = field(default_factory=dict)

    @property
    def grouped_days(self) -> list[date]:
        return sorted(self.grouped)

    @property
    def grouped_symbols(self) -> int:
        return len({symbol for symbols in self.grouped.values() for symbol in symbols})

    @property
    def messages(self) -> list[BackfillMessage]:
        grouped: list[BackfillMessage] = [
            GroupedDailyBackfill(self.market, day, sorted(self.grouped[day]))
            for day in self.grouped_days
        ]
        return grouped + list(self.symbol_messages)

    @property
    def provider_requests(self) -> int:
        """At least one request per message that fetches; a range request may page further."""
        return len(self.grouped_days) + len(self.symbol_messages) - self.derived_messages


def build_plan(market: Market, units: Sequence[PlanUnit], target: date | None) -> MarketPlan:
    """Choose range or grouped-daily requests for `units`; pure, so it is tested without I/O."""
    plan = MarketPlan(market=market, target=target, units=len(units))
    if target is None:
        return plan
    daily_gaps: list[tuple[list[date], PlanUnit]] = []
    for unit in units:
        if unit.timeframe != DAILY:
            plan.symbol_messages.append(
                SymbolBackfill(unit.symbol, cast(Timeframe, unit.timeframe), target)
            )
            plan.derived_messages += unit.derived
            continue
        missing = missing_days(unit, target)
        if missing is None:
            plan.symbol_messages.append(SymbolBackfill(unit.symbol, DAILY, target))
        elif not missing:
            plan.up_to_date += 1
        else:
            daily_gaps.append((missing, unit))

    # Serving the k symbols with the shortest gaps by grouped requests costs one request per
    # date in the union of their gaps, and the rest one range request each. Gaps all end at the
    # target, so the unions grow by suffix; one pass finds the cheapest k (k = 0: no grouping).
    daily_gaps.sort(key=lambda gap: (len(gap[0]), gap[1].symbol))
    union: set[date] = set()
    best_k, best_cost = 0, len(daily_gaps)
    for k, (missing, _) in enumerate(daily_gaps, start=1):
        union.update(missing)
        cost = len(union) + len(daily_gaps) - k
        if cost < best_cost:
            best_k, best_cost = k, cost
    for missing, unit in daily_gaps[:best_k]:
        for day in missing:
            plan.grouped.setdefault(day, []).append(unit.symbol)
    for _, unit in daily_gaps[best_k:]:
        plan.symbol_messages.append(SymbolBackfill(unit.symbol, DAILY, target))
    return plan


@dataclass(slots=True)
class PlanReport:
    """One market's run: what was planned, queued, already queued before, and refused."""

    market: Market
    target: date | None
    units: int
    up_to_date: int
    grouped_days: int
    grouped_symbols: int
    symbol_messages: int
    provider_requests: int
    sent: int = 0
    already_queued: int = 0
    send_failures: int = 0
    sqs_calls: int = 0
    duration_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "market": self.market,
            "target": self.target.isoformat() if self.target else None,
            "units": self.units,
            "up_to_date": self.up_to_date,
            "grouped_days": self.grouped_days,
            "grouped_symbols": self.grouped_symbols,
            "symbol_messages": self.symbol_messages,
            "provider_requests": self.provider_requests,
            "sent": self.sent,
            "already_queued": self.already_queued,
            "send_failures": self.send_failures,
            "sqs_calls": self.sqs_calls,
            "duration_ms": self.duration_ms,
        }


def plan_market(
    conn: db.Connection, market: Market, *, now: datetime, queue_name: str
) -> PlanReport:
    """Plan one market and queue what is new; the connection is autocommit."""
    started = time.perf_counter()
    units = repository.list_plan_units(conn, asset_classes=MARKET_ASSET_CLASSES[market])
    plan = build_plan(market, units, target_date(market, now))
    report = PlanReport(
        market=market,
        target=plan.target,
        units=plan.units,
        up_to_date=plan.up_to_date,
        grouped_days=len(plan.grouped_days),
        grouped_symbols=plan.grouped_symbols,
        symbol_messages=len(plan.symbol_messages),
        provider_requests=plan.provider_requests,
    )
    if not units:
        log_event("backfill.plan.empty", market=market, reason="no active symbols; nothing sent")
        return report
    messages = {message.identity: message for message in plan.messages}
    with conn.transaction():
        unsent = repository.claim_unsent(conn, list(messages))
    report.already_queued = len(messages) - len(unsent)

    accepted_buffer: list[PlanIdentity] = []

    def record(indexes: list[int]) -> None:
        accepted_buffer.extend(unsent[index] for index in indexes)
        if len(accepted_buffer) >= _MARK_SENT_EVERY:
            repository.mark_sent(conn, accepted_buffer)
            accepted_buffer.clear()

    # A ledger row left unsent by an earlier run of the same day is sent as this plan sees it.
    bodies = [encode_message(messages[identity]) for identity in unsent]
    sent = queue.send_bodies(queue_name, bodies, on_accepted=record)
    repository.mark_sent(conn, accepted_buffer)
    report.sent = len(sent.accepted)
    report.send_failures = len(sent.failed)
    report.sqs_calls = sent.calls
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    log_event(
        "backfill.planned",
        level="error" if sent.failed else "info",
        metrics={
            "BackfillMessagesSent": (report.sent, COUNT),
            "BackfillSendFailures": (report.send_failures, COUNT),
            "PlanDuration": (report.duration_ms, MILLISECONDS),
        },
        failure_reasons=sorted(set(sent.failed.values())) or None,
        **report.as_dict(),
    )
    return report


def run_plan(
    markets: Sequence[Market], *, now: datetime | None = None, queue_name: str | None = None
) -> list[PlanReport]:
    """Plan and queue each market; raise (so the schedule's invocation is retried) when SQS
    refused any message. Refused messages stay unsent in the ledger and go with the next run."""
    moment = now or datetime.now(UTC)
    name = queue_name or get_settings().backfill_queue_name
    with db.connection() as conn:
        reports = [plan_market(conn, market, now=moment, queue_name=name) for market in markets]
    failures = sum(report.send_failures for report in reports)
    if failures:
        raise ServiceUnavailable(
            f"SQS refused {failures} backfill message(s); they are sent again by the next run"
        )
    return reports
