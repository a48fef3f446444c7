"""The backfill worker: drains SQS batches with the same backfill code the CLI runs.

Each record succeeds or fails alone: the handler answers `{"batchItemFailures": [...]}` (the
event source mapping has ReportBatchItemFailures), so SQS retries only the failed messages and
moves one to the dead-letter queue after maxReceiveCount receives. A malformed body fails its own
record with a logged reason. A message whose identity already completed is acknowledged without
running again, so a redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import msgspec

from chalicelib import container, db
from chalicelib.backfill import repository as backfill_repository
from chalicelib.backfill.calendar import NEW_YORK
from chalicelib.backfill.models import BackfillResult, TrackedSymbol
from chalicelib.config import get_settings
from chalicelib.ops import repository
from chalicelib.ops.models import (
    MARKET_ASSET_CLASSES,
    BackfillMessage,
    GroupedDailyBackfill,
    Market,
    SymbolBackfill,
    decode_message,
)
from chalicelib.ops.observability import COUNT, bound, log_event

if TYPE_CHECKING:
    from chalicelib.polygon import GroupedBar, PolygonBar, PolygonClient, Split


class RejectedMessage(Exception):
    """The message cannot succeed as written (not JSON, unknown symbol or timeframe)."""


def provider_client() -> PolygonClient:
    """One Polygon client per container and configuration; the key is read once (it may come
    from Secrets Manager, as plain text or as `{"api_key": ...}`)."""
    from chalicelib.polygon import PolygonClient
    from chalicelib.secrets import resolve_polygon_api_key

    settings = get_settings()
    cache_key = (
        settings.polygon_base_url,
        settings.polygon_api_key,
        settings.polygon_api_key_secret_arn,
    )

    def create() -> PolygonClient:
        api_key = resolve_polygon_api_key(settings)
        return PolygonClient.from_settings(
            msgspec.structs.replace(settings, polygon_api_key=api_key)
        )

    # Kept in `container.current.polygon_clients`; a client pushed out of it is closed.
    client: PolygonClient = container.current.polygon_clients.get_or_create(
        cache_key, create, on_evict=lambda evicted: evicted.close()
    )
    return client


# ----------------------------------------------------------------------------------------------
# Grouped daily: one provider request serves many symbols' daily bar


def _day_start_ms(day: date, market: Market) -> int:
    """Where the range endpoint puts a daily bar: midnight New York for stocks, UTC for crypto.
    Grouped rows are stamped otherwise (see GroupedBar), so they are re-stamped to match."""
    zone = UTC if market == "crypto" else NEW_YORK
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)


class GroupedDayClient:
    """Answers the backfill's per-symbol questions from one grouped-daily response.

    `aggregates` returns the day's bar for the ticker (whatever window is asked: the message
    serves exactly that day); `splits` uses the provider's bulk lookup when the client has one,
    else asks per ticker, so a split still triggers the full re-backfill of an adjusted series.
    """

    def __init__(self, client: PolygonClient, market: Market, rows: Iterable[GroupedBar]) -> None:
        self._client = client
        self._bars: dict[str, PolygonBar] = {}
        for row in rows:
            bar = row.bar()
            self._bars[row.ticker] = msgspec.structs.replace(bar, t=_day_start_ms(row.day, market))
        self._bulk_splits: dict[date, list[Split]] = {}

    @property
    def request_count(self) -> int:
        return self._client.request_count

    def aggregates(
        self, ticker: str, multiplier: int, timespan: str, start: date, end: date, **_: Any
    ) -> Iterator[list[PolygonBar]]:
        if (multiplier, timespan) != (1, "day"):
            raise ValueError("a grouped-daily message serves daily bars only")
        bar = self._bars.get(ticker)
        yield [bar] if bar is not None else []

    def splits(self, ticker: str, since: date) -> list[Split]:
        bulk = getattr(self._client, "splits_since", None)
        if bulk is None:
            return self._client.splits(ticker, since)
        if since not in self._bulk_splits:
            self._bulk_splits[since] = list(bulk(since))
        return [split for split in self._bulk_splits[since] if split.ticker == ticker]


# ----------------------------------------------------------------------------------------------
# One message


def _tracked(conn: db.Connection, symbols: list[str], timeframe: str) -> list[TrackedSymbol]:
    rows = {row.symbol: row for row in backfill_repository.get_symbols(conn, symbols)}
    unknown = [s for s in symbols if s not in rows or not rows[s].active]
    if unknown:
        raise RejectedMessage(f"not an active tracked symbol: {', '.join(unknown)}")
    lacking = [s for s in symbols if timeframe not in rows[s].timeframes]
    if lacking:
        raise RejectedMessage(f"{', '.join(lacking)} does not track the {timeframe} timeframe")
    return [rows[s] for s in symbols]


def _run_symbol(message: SymbolBackfill) -> list[BackfillResult]:
    from chalicelib.backfill.service import backfill_one

    with db.connection() as conn:
        (symbol,) = _tracked(conn, [message.symbol], message.timeframe)
    return [backfill_one(db.get_database(), provider_client(), symbol, message.timeframe)]


def _run_grouped(message: GroupedDailyBackfill) -> list[BackfillResult]:
    from chalicelib.backfill.service import backfill_one

    with db.connection() as conn:
        rows = backfill_repository.get_symbols(conn, message.symbols)
    # A symbol deactivated (or moved off 1d) since the plan is skipped, not failed: the plan
    # was right when made, and nothing about the message can improve by retrying it.
    symbols = [
        row
        for row in rows
        if row.active
        and "1d" in row.timeframes
        and row.asset_class in MARKET_ASSET_CLASSES[message.market]
    ]
    client = provider_client()
    grouped = GroupedDayClient(
        client, message.market, client.grouped_daily(message.market, message.window)
    )
    source = db.get_database()
    # GroupedDayClient answers the two calls backfill_one makes of a client.
    return [backfill_one(source, grouped, symbol, "1d") for symbol in symbols]  # type: ignore[arg-type]


def run_message(message: BackfillMessage) -> list[BackfillResult]:
    """Run one decoded message; RejectedMessage when it names what is not tracked."""
    if isinstance(message, SymbolBackfill):
        return _run_symbol(message)
    return _run_grouped(message)


def process_body(body: str) -> str | None:
    """Handle one message body; None on success, else the reason it failed (already logged)."""
    try:
        message = decode_message(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        reason = f"malformed message: {exc}"
        log_event("backfill.message.rejected", level="error", reason=reason, body=body[:200])
        return reason
    identity = message.identity
    # Planned messages go through the ledger, so a repeated plan or a redelivery does no work
    # twice; one an operator requested runs as asked.
    requested = isinstance(message, SymbolBackfill) and message.request_id is not None
    attempts = None
    if not requested:
        with db.connection() as conn:
            ledger = repository.record_attempt(conn, identity)
        attempts = ledger.attempts
        if ledger.completed_at is not None:
            log_event("backfill.message.duplicate", identity=str(identity), attempts=attempts)
            return None
    try:
        results = run_message(message)
    except RejectedMessage as exc:
        reason = str(exc)
        log_event("backfill.message.rejected", level="error", identity=str(identity), reason=reason)
        if not requested:
            with db.connection() as conn:
                repository.mark_failed(conn, identity, error=reason)
        return reason
    failed = [result for result in results if result.status != "completed"]
    bars_written = sum(result.bars_written for result in results)
    log_event(
        "backfill.message.done" if not failed else "backfill.message.failed",
        level="error" if failed else "info",
        metrics={
            "BarsWritten": (bars_written, COUNT),
            "BackfillFailures": (len(failed), COUNT),
            "ProviderRequests": (sum(result.provider_requests for result in results), COUNT),
        },
        identity=str(identity),
        attempts=attempts,
        operator_request_id=message.request_id if isinstance(message, SymbolBackfill) else None,
        units=len(results),
        errors=[f"{r.symbol} {r.timeframe}: {r.error}" for r in failed][:10] or None,
    )
    failure = "; ".join(f"{r.symbol} {r.timeframe}: {r.error}" for r in failed)[:500] or None
    if not requested:
        with db.connection() as conn:
            if failure:
                repository.mark_failed(conn, identity, error=failure)
            else:
                repository.mark_completed(conn, identity)
    return failure


def handle_batch(
    records: Iterable[Mapping[str, Any]], *, request_id: str | None = None
) -> dict[str, Any]:
    """The SQS handler's answer for one batch: the ids of the records that failed."""
    failures: list[dict[str, str]] = []
    with bound(request_id=request_id):
        for record in records:
            message_id = str(record.get("messageId", ""))
            with bound(message_id=message_id):
                try:
                    reason = process_body(str(record.get("body", "")))
                except Exception as exc:  # a record never crashes the batch
                    from chalicelib.backfill.service import describe_error

                    reason = describe_error(exc)
                    log_event("backfill.message.error", level="error", reason=reason)
            if reason is not None:
                failures.append({"itemIdentifier": message_id})
                _warn_if_last_receive(record, message_id, reason)
    return {"batchItemFailures": failures}


def _warn_if_last_receive(record: Mapping[str, Any], message_id: str, reason: str) -> None:
    """Say so when this failure sends the message to the dead-letter queue (the queue's
    maxReceiveCount is BACKFILL_MAX_RECEIVE_COUNT), so the DLQ alarm has a log line to match."""
    attributes = record.get("attributes") or {}
    try:
        received = int(attributes.get("ApproximateReceiveCount", 0))
    except (TypeError, ValueError):
        return
    if received >= get_settings().backfill_max_receive_count:
        log_event(
            "backfill.message.dead_lettered",
            level="error",
            message_id=message_id,
            receives=received,
            reason=reason,
        )
