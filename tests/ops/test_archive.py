"""The audit archive: gzip JSON Lines per day in S3, rows deleted only after the upload, and a
failure of S3 or the database at any step losing nothing and duplicating nothing."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib import db
from chalicelib.errors import ConfigError, DatabaseUnavailable, ServiceUnavailable
from chalicelib.keys import repository as keys_repository
from chalicelib.ops import archive

BUCKET = "mdw-test-audit-archive"
NOW = datetime(2025, 11, 21, 4, 30, tzinfo=UTC)
# AUDIT_RETENTION_DAYS=90 → the cutoff is 2025-08-23 00:00 UTC.
CUTOFF = datetime(2025, 8, 23, tzinfo=UTC)


@pytest.fixture
def bucket(aws: None, set_env: Callable[..., None]) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    set_env(AUDIT_ARCHIVE_BUCKET=BUCKET, AUDIT_RETENTION_DAYS="90", AUDIT_ARCHIVE_BATCH_ROWS="4")
    return BUCKET


def add_audit_rows(conn: db.Connection, times: list[datetime]) -> list[int]:
    ids = []
    for n, at in enumerate(times):
        row = conn.execute(
            "INSERT INTO api_key_audit (key_id, occurred_at, event, method, path, status_code,"
            " source_ip) VALUES (7, %s, 'request', 'GET', %s, 200, '203.0.113.9') RETURNING id",
            (at, f"/api/v1/symbols?n={n}"),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def archived(bucket: str) -> dict[str, list[dict[str, Any]]]:
    s3 = boto3.client("s3")
    objects: dict[str, list[dict[str, Any]]] = {}
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        objects[item["Key"]] = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    return objects


def remaining_ids(conn: db.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM api_key_audit ORDER BY id")]


OLD_DAYS = [
    datetime(2025, 8, 20, 10, tzinfo=UTC),
    datetime(2025, 8, 20, 11, tzinfo=UTC),
    datetime(2025, 8, 20, 23, 59, tzinfo=UTC),
    datetime(2025, 8, 21, 0, 1, tzinfo=UTC),
    datetime(2025, 8, 22, 9, tzinfo=UTC),
    datetime(2025, 8, 22, 23, 59, 59, tzinfo=UTC),
]
RECENT = [CUTOFF, CUTOFF + timedelta(days=40)]


def test_old_rows_go_to_s3_by_day_and_leave_the_table(
    pinned_db: db.Connection, bucket: str
) -> None:
    old = add_audit_rows(pinned_db, OLD_DAYS)
    recent = add_audit_rows(pinned_db, RECENT)

    report = archive.run_archive(now=NOW)

    objects = archived(bucket)
    # Batches of 4: ids 1-4 (three on the 20th, one on the 21st), then 5-6 (the 22nd).
    assert sorted(objects) == [
        f"audit/2025/08/20/audit-{old[0]:019d}.jsonl.gz",
        f"audit/2025/08/21/audit-{old[3]:019d}.jsonl.gz",
        f"audit/2025/08/22/audit-{old[4]:019d}.jsonl.gz",
    ]
    first = objects[f"audit/2025/08/20/audit-{old[0]:019d}.jsonl.gz"][0]
    assert first == {
        "id": old[0],
        "key_id": 7,
        "occurred_at": "2025-08-20T10:00:00+00:00",
        "event": "request",
        "method": "GET",
        "route": None,
        "path": "/api/v1/symbols?n=0",
        "status_code": 200,
        "latency_ms": None,
        "source_ip": "203.0.113.9",
        "request_id": None,
        "key_prefix": None,
        "reason": None,
        "attempts": 1,
    }
    assert (report.rows_archived, report.objects_written, report.cutoff) == (6, 3, CUTOFF)
    assert remaining_ids(pinned_db) == recent


def test_a_rerun_with_nothing_old_writes_nothing(pinned_db: db.Connection, bucket: str) -> None:
    add_audit_rows(pinned_db, OLD_DAYS)
    archive.run_archive(now=NOW)
    before = archived(bucket)

    report = archive.run_archive(now=NOW)

    assert (report.rows_archived, report.objects_written) == (0, 0)
    assert archived(bucket) == before


def assert_each_row_archived_once(bucket: str, ids: list[int]) -> None:
    seen = Counter(row["id"] for rows in archived(bucket).values() for row in rows)
    assert seen == Counter(ids)


class FailingS3:
    """The real (moto) client, except that upload number `fail_on` raises."""

    def __init__(self, fail_on: int) -> None:
        self._client = boto3.client("s3")
        self._fail_on = fail_on
        self.puts = 0

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        if self.puts == self._fail_on:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
        return self._client.put_object(**kwargs)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_an_s3_failure_loses_and_duplicates_nothing(
    pinned_db: db.Connection, bucket: str, fail_on: int
) -> None:
    old = add_audit_rows(pinned_db, OLD_DAYS)

    with pytest.raises(ServiceUnavailable) as raised:
        archive.run_archive(now=NOW, s3=FailingS3(fail_on))
    assert raised.value.message.endswith("EndpointConnectionError; nothing was deleted")
    assert set(old) - set(remaining_ids(pinned_db)) == (set(old[:4]) if fail_on == 3 else set())

    archive.run_archive(now=NOW)

    assert_each_row_archived_once(bucket, old)
    assert remaining_ids(pinned_db) == []


@pytest.mark.parametrize("step", ["select", "delete"])
def test_a_database_failure_loses_and_duplicates_nothing(
    pinned_db: db.Connection, bucket: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    old = add_audit_rows(pinned_db, OLD_DAYS)
    name = "select_audit_rows_before" if step == "select" else "delete_audit_rows"
    real = getattr(keys_repository, name)
    calls = Counter[str]()

    def second_call_fails(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        if calls[name] == 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(keys_repository, name, second_call_fails)
    with pytest.raises(DatabaseUnavailable):
        archive.run_archive(now=NOW)
    monkeypatch.setattr(keys_repository, name, real)

    archive.run_archive(now=NOW)

    assert_each_row_archived_once(bucket, old)
    assert remaining_ids(pinned_db) == []


def test_an_unconfigured_bucket_is_a_clear_error(
    pinned_db: db.Connection, set_env: Callable[..., None]
) -> None:
    set_env(AUDIT_ARCHIVE_BUCKET=None)

    with pytest.raises(ConfigError) as raised:
        archive.run_archive(now=NOW)

    assert raised.value.message == (
        "AUDIT_ARCHIVE_BUCKET is not set: the audit archive has nowhere to go"
    )


def test_old_plan_ledger_rows_are_pruned(pinned_db: db.Connection, bucket: str) -> None:
    pinned_db.execute(
        "INSERT INTO backfill_plan_messages (kind, target, timeframe, window_date, planned_at)"
        " VALUES ('symbol', 'OLD', '1d', '2025-09-01', %s), ('symbol', 'NEW', '1d',"
        " '2025-11-20', %s)",
        (NOW - timedelta(days=31), NOW - timedelta(days=1)),
    )

    report = archive.run_archive(now=NOW)

    assert report.plan_rows_pruned == 1
    targets = [row[0] for row in pinned_db.execute("SELECT target FROM backfill_plan_messages")]
    assert targets == ["NEW"]
