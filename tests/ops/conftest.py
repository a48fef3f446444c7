"""Fixtures for the serverless operations: a moto SQS queue with its dead-letter queue, the
Polygon simulator, and a worker client of it that retries fast."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib.ops import worker
from chalicelib.polygon import PolygonClient
from devtools.polygon_sim import PolygonSimulator

SIM_KEY = "sim-key-ops-7d1c"
# The name .chalice/config.json gives it: chalice.test.Client applies the stage's variables.
QUEUE_NAME = "mdw-backfill"
# BACKFILL_MAX_RECEIVE_COUNT in .chalice/config.json, which chalice.test.Client applies.
MAX_RECEIVES = 5
# Friday 2025-11-21, 23:00 UTC: the session (closed 21:00 UTC) is over and settled.
AFTER_CLOSE = datetime(2025, 11, 21, 23, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Queues:
    url: str
    dlq_url: str

    def count(self, *, dlq: bool = False) -> int:
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.dlq_url if dlq else self.url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def take_all(self, *, dlq: bool = False) -> list[dict[str, Any]]:
        """Receive every waiting message once (hidden for the rest of the test); their bodies."""
        sqs = boto3.client("sqs")
        bodies: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.dlq_url if dlq else self.url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=3600,
            ).get("Messages", [])
            if not messages:
                return bodies
            bodies.extend(json.loads(message["Body"]) for message in messages)


@pytest.fixture
def queues(aws: None, set_env: Callable[..., None]) -> Queues:
    """The backfill queue (visibility 0, so a failed message is visible again at once, as after
    its timeout) redriving to a dead-letter queue after MAX_RECEIVES receives."""
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"{QUEUE_NAME}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
            ),
        },
    )["QueueUrl"]
    set_env(BACKFILL_QUEUE_NAME=QUEUE_NAME)
    return Queues(url=url, dlq_url=dlq_url)


@pytest.fixture
def simulator(set_env: Callable[..., None]) -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=SIM_KEY, now=AFTER_CLOSE) as sim:
        set_env(POLYGON_BASE_URL=sim.url, POLYGON_API_KEY=SIM_KEY, POLYGON_API_KEY_SECRET_ARN=None)
        yield sim


@pytest.fixture
def fast_client(
    simulator: PolygonSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PolygonClient]:
    """The worker's provider client, retrying after milliseconds instead of seconds."""
    with PolygonClient(
        simulator.url, SIM_KEY, max_retries=1, backoff_base=0.001, max_backoff=0.01, jitter=0.0
    ) as client:
        monkeypatch.setattr(worker, "provider_client", lambda: client)
        yield client
