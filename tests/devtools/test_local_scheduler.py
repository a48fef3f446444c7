"""`make run`'s schedule: the real planner sends through `ops.queue` to the local queue, the real
worker drains it; failures are redelivered as SQS would, then dead-lettered."""

from __future__ import annotations

import io
import json
import time

import pytest

from chalicelib import db
from chalicelib.errors import ServiceUnavailable
from chalicelib.ops import queue
from devtools import local_scheduler
from devtools.local_scheduler import LocalQueue, LocalScheduler
from devtools.local_server import human_records
from devtools.polygon_sim import PolygonSimulator
from tests.factories import make_symbol


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_queue_takes_what_ops_queue_sends():
    local = LocalQueue("mdw-backfill")
    queue.install_client(local)

    report = queue.send_bodies("mdw-backfill", [f"body-{n}" for n in range(23)])

    assert report.accepted == list(range(23))
    assert report.calls == 3  # ten a call, as SendMessageBatch
    first = local.receive(5, wait_seconds=0)
    rest = local.receive(100, wait_seconds=0)
    # Batches are sent from several threads: their order among each other is not fixed.
    assert sorted(m.body for m in first + rest) == sorted(f"body-{n}" for n in range(23))
    assert (len(first), len(rest)) == (5, 18)
    assert {m.receives for m in first + rest} == {1}
    assert len(local) == 23  # received, not yet deleted


def test_a_received_message_is_invisible_until_its_redelivery(monkeypatch):
    monkeypatch.setattr(local_scheduler, "REDELIVERY_DELAY_SECONDS", 0.2)
    local = LocalQueue("q")
    local.send_message_batch(QueueUrl="local://q", Entries=[{"Id": "a", "MessageBody": "x"}])

    (first,) = local.receive(10, wait_seconds=0)
    hidden = local.receive(10, wait_seconds=0)
    again = local.receive(10, wait_seconds=1)

    assert hidden == []
    assert [m.message_id for m in again] == [first.message_id]
    assert again[0].receives == 2


def test_a_failing_message_is_redelivered_then_dead_lettered(monkeypatch, set_env):
    monkeypatch.setattr(local_scheduler, "REDELIVERY_DELAY_SECONDS", 0.05)
    set_env(BACKFILL_MAX_RECEIVE_COUNT="3")
    seen = []

    def handle_batch(records):
        seen.extend(record["attributes"]["ApproximateReceiveCount"] for record in records)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}

    scheduler = LocalScheduler(
        plan_every=3600, run_plan=lambda markets: [], handle_batch=handle_batch
    )
    scheduler.queue.send_message_batch(QueueUrl="", Entries=[{"Id": "a", "MessageBody": "doomed"}])
    scheduler.start()
    try:
        wait_for(lambda: scheduler.queue.dead_lettered)
    finally:
        scheduler.stop()

    assert seen == ["1", "2", "3"]
    assert scheduler.queue.dead_lettered == ["doomed"]
    assert len(scheduler.queue) == 0


def test_a_planner_outage_is_logged_once_and_planned_again(capsys):
    calls = []

    def run_plan(markets):
        calls.append(markets)
        raise ServiceUnavailable("database unavailable")

    scheduler = LocalScheduler(plan_every=3600, run_plan=run_plan)
    scheduler.plan_now()
    scheduler.plan_now()

    assert calls == [["stocks", "crypto"]] * 2
    assert scheduler.last_error == "database unavailable"
    assert scheduler.plans == 2
    # Logged once, not on every tick.
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["event"], r["reason"]) for r in logged] == [
        ("backfill.plan.failed", "database unavailable")
    ]


def test_any_planner_failure_keeps_the_schedule_alive():
    def run_plan(markets):
        raise RuntimeError("connection lost")

    scheduler = LocalScheduler(plan_every=3600, run_plan=run_plan)
    scheduler.plan_now()

    assert scheduler.last_error == "RuntimeError: connection lost"


def test_startup_says_what_is_scheduled():
    (line,) = LocalScheduler(plan_every=20).describe()

    assert line.startswith(
        "scheduler: the backfill planner runs every 20 s for stocks and crypto (in the cloud: "
        "cron(30 22 ? * MON-FRI *) and cron(15 0 * * ? *))"
    )


@pytest.mark.committed
def test_a_new_symbol_is_planned_and_backfilled_by_the_real_planner_and_worker(
    committed_db, set_env
):
    with PolygonSimulator(api_key="sched-key") as provider:
        set_env(
            POLYGON_BASE_URL=provider.url,
            POLYGON_API_KEY="sched-key",
            BACKFILL_DEPTH_DAILY_DAYS="30",
        )
        with db.connect(committed_db) as conn, conn.transaction():
            make_symbol(conn, "JPM")
        scheduler = LocalScheduler(plan_every=0.2).start()
        try:

            def backfilled():
                with db.connect(committed_db) as conn:
                    row = conn.execute(
                        "SELECT backfill_status, (SELECT count(*) FROM bars WHERE symbol = 'JPM') "
                        "FROM tracked_symbols WHERE symbol = 'JPM'"
                    ).fetchone()
                return row == ("completed", row[1]) and row[1] > 15

            wait_for(backfilled)
            plans_before = scheduler.plans
            wait_for(lambda: scheduler.plans >= plans_before + 3)
        finally:
            scheduler.stop()
        fetched = [r.path for r in provider.requests if r.path.startswith("/v2/aggs/ticker/JPM/")]

    # Planned once: later plans found the unit queued (the ledger) and up to date.
    assert len(fetched) == 1
    assert scheduler.queue.dead_lettered == []


def test_the_console_shows_what_happened_and_hides_what_did_not():
    stream = io.StringIO()
    write = human_records(stream)

    write({"event": "request", "level": "info", "path": "/health"})
    write({"event": "backfill.planned", "level": "info", "market": "stocks", "sent": 0})
    write(
        {
            "time": "t",
            "level": "info",
            "event": "backfill.planned",
            "function": "local",
            "market": "stocks",
            "target": "2026-11-27",
            "sent": 2,
            "up_to_date": 10,
            "BackfillMessagesSent": 2,
            "_aws": {},
        }
    )
    write(
        {
            "level": "info",
            "event": "backfill.message.done",
            "identity": "symbol:JPM/1d/2026-11-27",
            "BarsWritten": 1255,
        }
    )
    write(
        {
            "level": "error",
            "event": "backfill.message.failed",
            "identity": "symbol:X/1d/2026-11-27",
            "BarsWritten": 0,
            "errors": ["X 1d: boom"],
        }
    )
    write({"level": "error", "event": "backfill.plan.failed", "reason": "db down", "_aws": {}})

    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "planner: stocks up to 2026-11-27: 2 queued, 10 up to date",
        "worker: symbol:JPM/1d/2026-11-27 done, 1,255 bars written",
        "ERROR worker: symbol:X/1d/2026-11-27 failed, 0 bars written: X 1d: boom",
        "ERROR backfill.plan.failed reason=db down",
    ]
