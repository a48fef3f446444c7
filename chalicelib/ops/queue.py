"""The backfill queue on SQS: the planner sends with SendMessageBatch, ten bodies a call.

boto3 is imported when a queue is first used, never on the API's import path.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib import container
from chalicelib.errors import ServiceUnavailable

# SQS's limit per SendMessageBatch call.
BATCH_SIZE = 10
# Calls in flight at once: a planner for thousands of symbols finishes in seconds, not minutes.
SEND_CONCURRENCY = 8
# A batch's entries that SQS refused (throttling, internal errors) are sent again this often.
RETRIES_PER_ENTRY = 2
# Before each retry, a pause drawn from [0, base * 2**attempt) ("full jitter"): a throttled queue
# gets room, and the planner's concurrent batches do not retry in lockstep.
RETRY_BACKOFF_SECONDS = 0.2

# The client and the URLs are kept in `container.current` (sqs_client, queue_urls).
_lock = threading.Lock()


def sqs_client() -> Any:
    """One SQS client per container (clients are thread-safe; sessions are not)."""
    state = container.current
    with _lock:
        client = state.sqs_client
        if client is None:
            import boto3

            client = state.sqs_client = boto3.client("sqs")
        return client


def queue_url(name: str) -> str:
    """The queue's URL, looked up once per container."""
    cached = container.current.queue_urls.get(name)
    if cached is not None:
        return cached
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        url: str = sqs_client().get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ServiceUnavailable(f"cannot find SQS queue {name!r}: {code}") from None
    except BotoCoreError as exc:
        raise ServiceUnavailable(
            f"cannot reach SQS for queue {name!r}: {type(exc).__name__}"
        ) from None
    return container.current.queue_urls.put(name, url)


def install_client(client: Any) -> None:
    """Use `client` (anything with SQS's get_queue_url and send_message_batch) instead of
    boto3's: `make run` drains a local queue with the worker's own code."""
    state = container.current
    with _lock:
        state.sqs_client = client
        state.queue_urls.clear()


@dataclass(slots=True)
class SendReport:
    """Which bodies SQS accepted (by index into what was sent) and how many calls it took."""

    accepted: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    calls: int = 0


def _send_batch(url: str, entries: list[tuple[int, str]]) -> SendReport:
    from botocore.exceptions import BotoCoreError, ClientError

    report = SendReport()
    pending = entries
    for attempt in range(1 + RETRIES_PER_ENTRY):
        if not pending:
            break
        if attempt:
            time.sleep(random.uniform(0, RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)))
        by_id = {f"m{index}": (index, body) for index, body in pending}
        report.calls += 1
        try:
            response = sqs_client().send_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": entry_id, "MessageBody": body} for entry_id, (_, body) in by_id.items()
                ],
            )
        except (BotoCoreError, ClientError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, ClientError):
                reason = exc.response.get("Error", {}).get("Code", reason)
            for index, _ in pending:
                report.failed[index] = reason
            continue
        for success in response.get("Successful", []):
            index, _ = by_id[success["Id"]]
            report.accepted.append(index)
            report.failed.pop(index, None)
        retry = []
        for failure in response.get("Failed", []):
            index, body = by_id[failure["Id"]]
            report.failed[index] = failure.get("Code", "failed")
            # SenderFault entries (a malformed body) fail the same way every time.
            if not failure.get("SenderFault"):
                retry.append((index, body))
        pending = retry
    return report


def send_bodies(
    queue_name: str,
    bodies: Sequence[str],
    *,
    on_accepted: Callable[[list[int]], None] | None = None,
) -> SendReport:
    """Send `bodies` ten a call, several calls at a time; never raises for a refused entry.

    `on_accepted` is called in the caller's thread with each batch's accepted indexes as the
    batches finish, so the caller can record progress that survives a crash half-way.
    """
    if not bodies:
        return SendReport()
    url = queue_url(queue_name)
    batches = [
        [(index, bodies[index]) for index in range(start, min(start + BATCH_SIZE, len(bodies)))]
        for start in range(0, len(bodies), BATCH_SIZE)
    ]
    total = SendReport()
    with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(batches))) as pool:
        for report in pool.map(lambda batch: _send_batch(url, batch), batches):
            total.accepted.extend(report.accepted)
            total.failed.update(report.failed)
            total.calls += report.calls
            if on_accepted is not None and report.accepted:
                on_accepted(report.accepted)
    total.accepted.sort()
    return total
