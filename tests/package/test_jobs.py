"""The packaged migrate, planner, worker and archiver functions, each in its own container, with
the events EventBridge and SQS send them."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.migrations import discover_migrations
from tests.factories import make_symbol
from tests.package.conftest import AFTER_CLOSE as PRESENT
from tests.package.conftest import BUCKET, Migrated, Stack, StartContainer

# The simulator's present (see conftest): the planners plan as of then.
AFTER_CLOSE = PRESENT.isoformat()


def scheduled_event(rule: str, **detail: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": AFTER_CLOSE.replace("+00:00", "Z"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"],
        "detail": detail,
    }


def sqs_event(messages: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1763766000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1763766000001",
                },
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mdw-backfill-test",
                "awsRegion": "us-east-1",
            }
            for message_id, body in messages
        ]
    }


def test_migrate_lists_then_applies_every_migration(migrated: Migrated) -> None:
    files = [migration.filename for migration in discover_migrations()]

    assert migrated.dry_run["dry_run"] is True
    assert migrated.dry_run["pending_before"] == files
    assert migrated.dry_run["applied"] == []
    assert migrated.applied["applied"] == files
    assert migrated.applied["schema_ok"] is True


def test_the_planners_queue_and_the_worker_runs_only_good_messages(
    start_container: StartContainer,
    stack: Stack,
    aws_clients: Callable[[str], Any],
    package_conn: Any,
) -> None:
    make_symbol(package_conn, "AMZN", asset_class="stock", timeframes=["1d"])
    make_symbol(package_conn, "ETH", asset_class="crypto", timeframes=["1d"])
    sqs = aws_clients("sqs")

    stocks = start_container("BackfillPlanner").result(
        scheduled_event("mdw-stocks", as_of=AFTER_CLOSE)
    )
    crypto = start_container("BackfillPlannerCrypto").result(
        scheduled_event("mdw-crypto", as_of=AFTER_CLOSE)
    )
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=3600
    ).get("Messages", []):
        received += batch
    bodies = [json.loads(message["Body"]) for message in received]
    planned = {(body["symbol"], body["timeframe"]) for body in bodies}

    assert [plan["market"] for plan in stocks["plans"]] == ["stocks"]
    assert [plan["market"] for plan in crypto["plans"]] == ["crypto"]
    assert stocks["plans"][0]["sent"] + crypto["plans"][0]["sent"] == len(received)
    # Other tests of the session may have added symbols of their own.
    assert {("AMZN", "1d"), ("ETH", "1d")} <= planned

    worker = start_container("BackfillWorker")
    good = [(message["MessageId"], message["Body"]) for message in received]
    answer = worker.result(sqs_event([*good, ("malformed-1", "{not json")]))

    assert answer == {"batchItemFailures": [{"itemIdentifier": "malformed-1"}]}
    counts = dict(
        package_conn.execute(
            "SELECT symbol, count(*) FROM bars WHERE symbol IN ('AMZN', 'ETH') GROUP BY symbol"
        ).fetchall()
    )
    # The default depth reaches years back from the worker's clock to the simulator's present.
    assert counts["AMZN"] > 1000
    assert counts["ETH"] > counts["AMZN"]  # crypto trades every day


def test_the_archiver_moves_old_audit_rows_to_s3(
    start_container: StartContainer, aws_clients: Callable[[str], Any], package_conn: Any
) -> None:
    old = datetime.now(UTC) - timedelta(days=120)
    row = package_conn.execute(
        "INSERT INTO api_key_audit (key_id, occurred_at, event, method, path, status_code)"
        " VALUES (NULL, %s, 'request', 'GET', '/api/v1/symbols', 200) RETURNING id",
        (old,),
    ).fetchone()

    report = start_container("AuditArchiver").result(scheduled_event("mdw-archive"))

    assert report["rows_archived"] >= 1
    assert report["complete"] is True
    s3 = aws_clients("s3")
    archived_ids = set()
    for key in report["keys"]:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        archived_ids |= {json.loads(line)["id"] for line in gzip.decompress(body).splitlines()}
    assert row[0] in archived_ids
    assert package_conn.execute(
        "SELECT count(*) FROM api_key_audit WHERE id = %s", (row[0],)
    ).fetchone() == (0,)
