"""The cloud's schedule, in-process for `make run`.

On AWS, EventBridge runs the planners after each market's day and SQS feeds the worker. Here
one thread runs the same planner (`ops.planner.run_plan`) every few seconds, and a local queue
stands in for SQS: the planner sends to it through the same `ops.queue` code, and a second
thread hands its messages to the same worker code (`ops.worker.handle_batch`), redelivering a
failed message later as SQS would, until its receive count reaches the dead-letter limit.

The planner queues a unit once per market day, so planning often costs one query when nothing
is new, and a symbol added through the API is planned (its first backfill) on the next tick.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.config import get_settings
from chalicelib.errors import AppError
from chalicelib.market.tickers import Market
from chalicelib.ops.observability import log_event

MARKETS: tuple[Market, ...] = ("stocks", "crypto")
# How long a failed message waits before its next delivery (SQS: the visibility timeout).
REDELIVERY_DELAY_SECONDS = 30.0


@dataclass(slots=True)
class _Message:
    message_id: str
    body: str
    receives: int = 0
    visible_at: float = 0.0


class LocalQueue:
    """An in-memory stand-in for one SQS queue, with the two calls `ops.queue` makes of SQS's
    client (get_queue_url, send_message_batch) and a blocking receive for the worker thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"local://{name}"
        self._messages: list[_Message] = []
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self.dead_lettered: list[str] = []

    # The SQS client's calls -------------------------------------------------------------
    def get_queue_url(self, *, QueueName: str) -> dict[str, str]:  # noqa: N803 (boto3's name)
        return {"QueueUrl": f"local://{QueueName}"}

    def send_message_batch(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        Entries: list[Mapping[str, str]],  # noqa: N803
    ) -> dict[str, Any]:
        with self._changed:
            for entry in Entries:
                self._messages.append(_Message(f"local-{next(self._ids)}", entry["MessageBody"]))
            self._changed.notify_all()
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}

    # The worker's side ------------------------------------------------------------------
    def receive(self, max_messages: int, *, wait_seconds: float) -> list[_Message]:
        """Up to `max_messages` visible messages, waiting up to `wait_seconds` for one."""
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            while True:
                now = time.monotonic()
                visible = [m for m in self._messages if m.visible_at <= now][:max_messages]
                if visible or now >= deadline:
                    for message in visible:
                        message.receives += 1
                        message.visible_at = now + REDELIVERY_DELAY_SECONDS
                    return visible
                self._changed.wait(timeout=min(deadline - now, 1.0))

    def delete(self, message: _Message) -> None:
        with self._changed:
            self._messages.remove(message)

    def __len__(self) -> int:
        with self._changed:
            return len(self._messages)


class LocalScheduler:
    """The planner every `plan_every` seconds and the worker draining the local queue."""

    def __init__(
        self,
        *,
        plan_every: float,
        run_plan: Callable[..., Any] | None = None,
        handle_batch: Callable[..., Mapping[str, Any]] | None = None,
    ) -> None:
        from chalicelib.ops import planner, queue, worker

        settings = get_settings()
        self.plan_every = plan_every
        self.queue = LocalQueue(settings.backfill_queue_name)
        queue.install_client(self.queue)
        self._run_plan = run_plan or planner.run_plan
        self._handle_batch = handle_batch or worker.handle_batch
        self._batch_size = settings.backfill_worker_batch_size
        self._max_receives = settings.backfill_max_receive_count
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._plan_loop, name="local-planner", daemon=True),
            threading.Thread(target=self._work_loop, name="local-worker", daemon=True),
        ]
        self.plans = 0
        self.last_error: str | None = None

    def describe(self) -> list[str]:
        """What is scheduled, for the startup output."""
        settings = get_settings()
        return [
            f"scheduler: the backfill planner runs every {self.plan_every:g} s for "
            f"{' and '.join(MARKETS)} (in the cloud: {settings.backfill_stocks_schedule} and "
            f"{settings.backfill_crypto_schedule}); a local queue stands in for SQS and the "
            "backfill worker drains it, so a symbol added through the API gets its bars "
            "within a minute",
        ]

    def start(self) -> LocalScheduler:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop planning and working; a backfill in flight finishes (or is abandoned with the
        process after `timeout`: it is idempotent and runs again on the next start)."""
        from chalicelib.ops import queue

        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        queue.forget_clients()  # SQS's own client again, for whatever runs next in the process

    def plan_now(self) -> None:
        """One planner run. A failure (a database outage, say) is logged once, not every tick,
        and the next tick plans again, as the next schedule would in the cloud."""
        try:
            self._run_plan(list(MARKETS))
            error = None
        except AppError as exc:
            error = exc.message
        except Exception as exc:  # the schedule outlives any one failed run
            error = f"{type(exc).__name__}: {exc}"
        if error is not None and error != self.last_error:
            log_event("backfill.plan.failed", level="error", reason=error)
        self.last_error = error
        self.plans += 1

    def _plan_loop(self) -> None:
        while not self._stopping.is_set():
            self.plan_now()
            self._stopping.wait(self.plan_every)

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            messages = self.queue.receive(self._batch_size, wait_seconds=1.0)
            if not messages:
                continue
            records = [
                {
                    "messageId": message.message_id,
                    "body": message.body,
                    "attributes": {"ApproximateReceiveCount": str(message.receives)},
                }
                for message in messages
            ]
            try:
                answer = self._handle_batch(records)
                failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
            except Exception:  # the worker answers for its records; this is the last resort
                failed = {message.message_id for message in messages}
            for message in messages:
                if message.message_id not in failed:
                    self.queue.delete(message)
                elif message.receives >= self._max_receives:
                    # Where SQS would move it to the dead-letter queue (the worker has logged it).
                    self.queue.delete(message)
                    self.queue.dead_lettered.append(message.body)
