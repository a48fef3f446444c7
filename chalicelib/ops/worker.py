"""The backfill worker: drains SQS batches with the same backfill code the CLI runs.

The worker owns the queue's side (decoding, the planned-message ledger, logs and metrics, the
container's provider client); what a message does is the backfill service's
(`backfill_symbol_through`, `backfill_grouped_day`), rules included.

Each record succeeds or fails alone: the handler answers `{"batchItemFailures": [...]}` (the
event source mapping has ReportBatchItemFailures), so SQS retries only the failed messages and
moves one to the dead-letter queue after maxReceiveCount receives. A malformed body fails its own
record with a logged reason. A message whose identity already completed is acknowledged without
running again, so a redelivery changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import describe_error
from chalicelib.ops import repository
from chalicelib.ops.models import (
    BackfillMessage,
    GroupedDailyBackfill,
    SymbolBackfill,
    decode_message,
)
from chalicelib.ops.observability import COUNT, bound, log_event

if TYPE_CHECKING:
    from chalicelib.backfill.models import BackfillResult
    from chalicelib.polygon import PolygonClient

_client_lock = threading.Lock()
_clients: dict[tuple[str, str | None, str | None], PolygonClient] = {}


class RejectedMessage(Exception):
    """The message cannot succeed as written (it names a unit that may not run)."""


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
    with _client_lock:
        client = _clients.get(cache_key)
        if client is None:
            api_key = resolve_polygon_api_key(settings)
            client = PolygonClient.from_settings(
                msgspec.structs.replace(settings, polygon_api_key=api_key)
            )
            _clients[cache_key] = client
        return client


def forget_clients() -> None:
    with _client_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# ----------------------------------------------------------------------------------------------
# One message


def run_message(message: BackfillMessage) -> list[BackfillResult]:
    """Run one decoded message through the backfill service, up to the message's window;
    RejectedMessage when it names a unit that may not run (the service's rule says which)."""
    from chalicelib.backfill import service

    if isinstance(message, GroupedDailyBackfill):
        return service.backfill_grouped_day(
            message.market, message.window, message.symbols, client=provider_client()
        )
    try:
        result = service.backfill_symbol_through(
            message.symbol, message.timeframe, until=message.window, client=provider_client()
        )
    except service.NOT_BACKFILLABLE as exc:
        raise RejectedMessage(exc.message) from None
    return [result]


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
