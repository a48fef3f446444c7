"""End to end through the Chalice functions under moto: the planner fills SQS, the queue is
drained through backfill_worker as Lambda's event source would, bars land in PostgreSQL from the
simulator, a failure is retried alone and ends in the dead-letter queue, and a second plan of
the same day adds nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib import db
from chalicelib.market.calendar import trading_days
from devtools.polygon_sim import PolygonSimulator
from tests.factories import make_bars, make_symbol
from tests.ops.conftest import AFTER_CLOSE, MAX_RECEIVES, Queues


@pytest.fixture
def lambdas(pinned_db: db.Connection) -> Iterator[Any]:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as client:
        yield client


def plan(lambdas: Any, function: str = "backfill_planner") -> dict[str, Any]:
    event = lambdas.events.generate_cw_event(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={"as_of": AFTER_CLOSE.isoformat()},
        resources=["arn:aws:events:us-east-1:123456789012:rule/mdw-backfill-planner"],
    )
    result: dict[str, Any] = lambdas.lambda_.invoke(function, event).payload
    return result


def drain_once(lambdas: Any, queues: Queues) -> list[str]:
    """One round of what the event source mapping does: receive every visible message once,
    invoke the worker with them in batches of five, delete what succeeded, and make what the
    worker reported failed visible again (as its visibility timeout would). Returns the failed
    messages' targets."""
    sqs = boto3.client("sqs")
    failed_targets: list[str] = []
    retry_handles: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queues.url,
            MaxNumberOfMessages=5,
            VisibilityTimeout=3600,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            break
        event = lambdas.events.generate_sqs_event(
            message_bodies=[m["Body"] for m in messages], queue_name="mdw-backfill"
        )
        for record, message in zip(event["Records"], messages, strict=True):
            record["messageId"] = message["MessageId"]
            record["receiptHandle"] = message["ReceiptHandle"]
            record["attributes"]["ApproximateReceiveCount"] = message["Attributes"][
                "ApproximateReceiveCount"
            ]
        answer = lambdas.lambda_.invoke("backfill_worker", event).payload
        failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                body = json.loads(message["Body"])
                failed_targets.append(body.get("symbol") or body.get("market"))
                retry_handles.append(message["ReceiptHandle"])
            else:
                sqs.delete_message(QueueUrl=queues.url, ReceiptHandle=message["ReceiptHandle"])
    for handle in retry_handles:
        sqs.change_message_visibility(
            QueueUrl=queues.url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    return failed_targets


@pytest.mark.usefixtures("fast_client")
def test_plan_drain_retry_dead_letter_and_replan(
    lambdas: Any,
    pinned_db: db.Connection,
    queues: Queues,
    simulator: PolygonSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Twelve caught-up stocks share one grouped request; two new ones need their history.
    caught_up = [f"C{n:02d}" for n in range(12)]
    for symbol in caught_up:
        simulator.add_ticker(symbol)
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, [AFTER_CLOSE.replace(day=20, hour=5, minute=0)])
    for symbol in ("NEWA", "NEWB"):
        simulator.add_ticker(symbol)
        make_symbol(pinned_db, symbol)
    simulator.inject_fault("forbidden", ticker="NEWB", times=None)

    planned = plan(lambdas)

    (report,) = planned["plans"]
    assert (report["market"], report["target"]) == ("stocks", "2025-11-21")
    assert (report["grouped_days"], report["grouped_symbols"], report["symbol_messages"]) == (
        1,
        12,
        2,
    )
    assert (report["sent"], report["sqs_calls"]) == (3, 1)
    assert queues.count() == 3

    # First round: the grouped message and NEWA succeed, NEWB alone is reported failed.
    assert drain_once(lambdas, queues) == ["NEWB"]
    friday = pinned_db.execute(
        "SELECT count(*) FROM bars WHERE time = '2025-11-21T05:00:00+00:00'"
    ).fetchone()
    assert friday == (13,)  # the twelve caught-up symbols and NEWA
    history = pinned_db.execute("SELECT count(*) FROM bars WHERE symbol = 'NEWA'").fetchone()
    [(start,)] = pinned_db.execute(
        "SELECT range_start FROM backfill_runs WHERE symbol = 'NEWA'"
    ).fetchall()
    assert history is not None
    # The history starts five years before today's date (so the count moves with the date) and
    # ends at the simulator's present: every session in between.
    assert history[0] == len(trading_days(start, AFTER_CLOSE.date()))
    assert pinned_db.execute("SELECT count(*) FROM bars WHERE symbol = 'NEWB'").fetchone() == (0,)

    # NEWB keeps failing until it has been received MAX_RECEIVES times, then it is dead-lettered.
    for _ in range(MAX_RECEIVES - 1):
        assert drain_once(lambdas, queues) == ["NEWB"]
    assert drain_once(lambdas, queues) == []
    assert queues.count() == 0
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (last,) = [line for line in logged if line["event"] == "backfill.message.dead_lettered"]
    assert last["receives"] == MAX_RECEIVES
    assert last["reason"].startswith("NEWB 1d: provider:")
    (dead,) = queues.take_all(dlq=True)
    assert dead == {"kind": "symbol", "symbol": "NEWB", "timeframe": "1d", "window": "2025-11-21"}

    # The same day planned again: every identity is known, nothing is sent.
    again = plan(lambdas)["plans"][0]
    assert (again["sent"], again["already_queued"], again["sqs_calls"]) == (0, 1, 0)
    assert queues.count() == 0


def test_the_crypto_planner_plans_crypto(
    lambdas: Any, pinned_db: db.Connection, queues: Queues
) -> None:
    make_symbol(pinned_db, "BTC", asset_class="crypto")
    make_symbol(pinned_db, "AAPL")

    (report,) = plan(lambdas, "backfill_planner_crypto")["plans"]

    assert (report["market"], report["target"], report["sent"]) == ("crypto", "2025-11-20", 1)
    (body,) = queues.take_all()
    assert body == {"kind": "symbol", "symbol": "BTC", "timeframe": "1d", "window": "2025-11-20"}


def test_the_archiver_function_reports_what_it_did(
    lambdas: Any, pinned_db: db.Connection, aws: None, set_env: Any
) -> None:
    boto3.client("s3").create_bucket(Bucket="mdw-e2e-archive")
    set_env(AUDIT_ARCHIVE_BUCKET="mdw-e2e-archive")
    pinned_db.execute(
        "INSERT INTO api_key_audit (key_id, occurred_at, event) VALUES (1, now() - interval"
        " '400 days', 'request'), (1, now(), 'request')"
    )
    event = lambdas.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
    )

    summary = lambdas.lambda_.invoke("audit_archiver", event).payload

    assert (summary["rows_archived"], summary["objects_written"]) == (1, 1)
    assert summary["keys"][0].startswith("audit/")
    assert pinned_db.execute("SELECT count(*) FROM api_key_audit").fetchone() == (1,)
