"""The audit archive: audit rows older than the retention go to S3 as gzip JSON Lines under
`audit/YYYY/MM/DD/`, and are deleted only once S3 has confirmed the upload.

Why a failure anywhere loses nothing and duplicates nothing:
- The cutoff is a UTC midnight, so a day's rows are all archived under the same rules, and rows
  are read in id order in batches, each batch being every row below the cutoff in an id range.
- An object's key is its day and the first id in it, so a re-run after any failure writes the
  same rows to the same key: S3 overwrites instead of keeping a second copy. Bytes are
  deterministic too (gzip without a timestamp).
- A batch is deleted, in one transaction, only after every object of it was uploaded with a
  Content-MD5 that S3 checked. A failed upload or a failed delete leaves the rows in place for
  the next run, which uploads them again over the same keys.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import ConfigError, ServiceUnavailable
from chalicelib.keys import repository as keys_repository
from chalicelib.keys import service as keys_service
from chalicelib.keys.models import AuditRow
from chalicelib.ops import repository

PREFIX = "audit"
# Planned backfill messages are kept this long for inspection, then pruned by the same job.
PLAN_LEDGER_RETENTION = timedelta(days=30)
# Stop starting batches when less than this is left of the function's time: a batch (select,
# gzip, upload, delete) of the default 50,000 rows takes a few seconds; the next run continues.
_TIME_RESERVE_MS = 15_000


def archive_cutoff(now: datetime, retention_days: int) -> datetime:
    """UTC midnight `retention_days` before today: rows before it are archived."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC)


def object_key(day: date, first_id: int) -> str:
    return f"{PREFIX}/{day:%Y/%m/%d}/audit-{first_id:019d}.jsonl.gz"


def encode_rows(rows: list[AuditRow]) -> bytes:
    lines = [
        json.dumps(
            {
                "id": row.id,
                "key_id": row.key_id,
                "occurred_at": row.occurred_at.astimezone(UTC).isoformat(),
                "event": row.event,
                "method": row.method,
                "route": row.route,
                "path": row.path,
                "status_code": row.status_code,
                "latency_ms": row.latency_ms,
                "source_ip": row.source_ip,
                "request_id": row.request_id,
                "key_prefix": row.key_prefix,
                "reason": row.reason,
                "attempts": row.attempts,
            },
            separators=(",", ":"),
        )
        for row in rows
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


@dataclass(slots=True)
class ArchiveReport:
    cutoff: datetime
    rows_archived: int = 0
    objects_written: int = 0
    keys: list[str] = field(default_factory=list)
    plan_rows_pruned: int = 0
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "rows_archived": self.rows_archived,
            "objects_written": self.objects_written,
            "keys": self.keys[:50],
            "plan_rows_pruned": self.plan_rows_pruned,
            "complete": self.complete,
        }


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def upload(s3: Any, bucket: str, key: str, body: bytes, *, rows: int) -> None:
    """Put one object; returns only once S3 confirmed it (and checked the body's MD5)."""
    from botocore.exceptions import BotoCoreError, ClientError

    digest = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - integrity, not security
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentMD5=digest,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
            Metadata={"rows": str(rows)},
        )
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable(
            f"cannot upload s3://{bucket}/{key}: {type(exc).__name__}; nothing was deleted"
        ) from None


def run_archive(
    *,
    now: datetime | None = None,
    bucket: str | None = None,
    s3: Any = None,
    remaining_ms: Callable[[], int] | None = None,
) -> ArchiveReport:
    """Archive every audit row older than the retention; safe to re-run after any failure."""
    settings = get_settings()
    bucket = bucket or settings.audit_archive_bucket
    if not bucket:
        raise ConfigError("AUDIT_ARCHIVE_BUCKET is not set: the audit archive has nowhere to go")
    moment = now or datetime.now(UTC)
    report = ArchiveReport(cutoff=archive_cutoff(moment, settings.audit_retention_days))
    s3 = s3 or _s3_client()
    batch_rows = settings.audit_archive_batch_rows
    with db.connection() as conn:
        # Usage counters are folded in from the audit rows: count them before they leave.
        with conn.transaction():
            keys_service.fold_usage(conn)
        after_id = 0
        while True:
            if remaining_ms is not None and remaining_ms() < _TIME_RESERVE_MS:
                report.complete = False
                break
            rows = keys_repository.select_audit_rows_before(
                conn, cutoff=report.cutoff, after_id=after_id, limit=batch_rows
            )
            if not rows:
                break
            by_day = groupby(
                sorted(rows, key=lambda row: (row.occurred_at.astimezone(UTC).date(), row.id)),
                key=lambda row: row.occurred_at.astimezone(UTC).date(),
            )
            for day, day_rows in by_day:
                group = list(day_rows)
                key = object_key(day, group[0].id)
                upload(s3, bucket, key, encode_rows(group), rows=len(group))
                report.objects_written += 1
                report.keys.append(key)
            with conn.transaction():
                keys_repository.delete_audit_rows(
                    conn, first_id=rows[0].id, last_id=rows[-1].id, cutoff=report.cutoff
                )
            report.rows_archived += len(rows)
            after_id = rows[-1].id
            if len(rows) < batch_rows:
                break
        with conn.transaction():
            report.plan_rows_pruned = repository.delete_planned_before(
                conn, before=moment - PLAN_LEDGER_RETENTION
            )
    return report
