"""What the code expects the database to hold, checked by `verify_schema`, and the schema
version it expects, checked once per API container (`health.service`).

A migration that adds a table, column or index the code relies on adds it here too. This module
stays small on purpose: API containers import it, and only `migrate` needs the runner.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from chalicelib.config import MIGRATIONS_DIR

MIGRATION_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
SELECT_SCHEMA_VERSION = "SELECT max(version) FROM schema_migrations"
SELECT_HISTORY_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"

Connection = psycopg.Connection[Any]

BAR_COLUMNS: tuple[str, ...] = (
    "symbol",
    "timeframe",
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "validated",
    "flags",
    "updated_at",
)

EXPECTED_TABLES: dict[str, tuple[str, ...]] = {
    "schema_migrations": (
        "version",
        "name",
        "checksum",
        "applied_at",
        "applied_by",
        "duration_ms",
    ),
    "api_keys": (
        "id",
        "name",
        "key_hash",
        "key_prefix",
        "scopes",
        "active",
        "expires_at",
        "allowed_cidrs",
        "rate_limit_per_minute",
        "created_at",
        "updated_at",
        "previous_key_hash",
        "previous_key_expires_at",
        "last_used_at",
        "request_count",
        "usage_counted_through",
        "previous_key_prefix",
    ),
    "api_key_audit": (
        "id",
        "key_id",
        "occurred_at",
        "event",
        "method",
        "route",
        "path",
        "status_code",
        "latency_ms",
        "source_ip",
        "request_id",
        "key_prefix",
        "reason",
        "attempts",
        "aggregate_minute",
    ),
    "tracked_symbols": (
        "symbol",
        "asset_class",
        "timeframes",
        "active",
        "backfill_status",
        "last_backfill",
        "last_error",
        "created_at",
        "updated_at",
    ),
    "bars": BAR_COLUMNS,
    "bar_counts": ("symbol", "timeframe", "bars", "validated_bars"),
    "backfill_runs": (
        "id",
        "symbol",
        "timeframe",
        "status",
        "started_at",
        "finished_at",
        "range_start",
        "range_end",
        "bars_written",
        "provider_requests",
        "error",
    ),
    "backfill_state": (
        "symbol",
        "timeframe",
        "status",
        "last_backfill",
        "last_error",
        "last_run_id",
        "updated_at",
        "stored_prices",
    ),
    "backfill_plan_messages": (
        "kind",
        "target",
        "timeframe",
        "window_date",
        "planned_at",
        "sent_at",
        "completed_at",
        "attempts",
        "last_error",
    ),
    "splits": (
        "symbol",
        "execution_date",
        "split_from",
        "split_to",
        "created_at",
        "effective_at",
    ),
    # A view: the bars with split-adjusted prices, column for column.
    "adjusted_bars": BAR_COLUMNS,
}

EXPECTED_INDEXES: tuple[str, ...] = (
    "api_keys_pkey",
    "api_keys_name_key",
    "api_keys_key_hash_key",
    "api_keys_previous_key_hash_key",
    "api_key_audit_key_id_id_idx",
    "api_key_audit_occurred_at_idx",
    "api_key_audit_rate_window_idx",
    "api_key_audit_requests_idx",
    "api_key_audit_refusal_minute_key",
    "tracked_symbols_pkey",
    "bars_pkey",
    "bar_counts_pkey",
    "backfill_runs_symbol_timeframe_idx",
    "backfill_state_pkey",
    "backfill_plan_messages_pkey",
    "backfill_plan_messages_planned_at_idx",
    "splits_pkey",
    "splits_execution_date_idx",
    "splits_symbol_effective_at_idx",
)

SELECT_COLUMNS = """
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY(%(tables)s)
"""
SELECT_INDEXES = """
SELECT indexname FROM pg_indexes
WHERE schemaname = current_schema() AND indexname = ANY(%(indexes)s)
"""


class SchemaReport(msgspec.Struct, frozen=True):
    """Each expected table, `table.column` and index name mapped to whether it exists."""

    checks: dict[str, bool]

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    @property
    def missing(self) -> list[str]:
        return [name for name, present in self.checks.items() if not present]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks, "missing": self.missing}


def verify_schema(conn: psycopg.Connection[Any]) -> SchemaReport:
    present_columns = {
        (table, column)
        for table, column in conn.execute(
            SELECT_COLUMNS, {"tables": list(EXPECTED_TABLES)}
        ).fetchall()
    }
    present_tables = {table for table, _ in present_columns}
    present_indexes = {
        row[0]
        for row in conn.execute(SELECT_INDEXES, {"indexes": list(EXPECTED_INDEXES)}).fetchall()
    }
    checks: dict[str, bool] = {}
    for table, columns in EXPECTED_TABLES.items():
        checks[f"table:{table}"] = table in present_tables
        for column in columns:
            checks[f"column:{table}.{column}"] = (table, column) in present_columns
    for index in EXPECTED_INDEXES:
        checks[f"index:{index}"] = index in present_indexes
    return SchemaReport(checks)


@cache
def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The newest version on disk, from the file names alone: the start-up check of every API
    container asks for it, and needs neither the files' text nor their checksums. The files
    cannot change while a container lives."""
    versions = [
        int(match["version"])
        for path in directory.glob("*.sql")
        if (match := MIGRATION_FILENAME.match(path.name))
    ]
    return max(versions, default=0)


def current_schema_version(conn: Connection) -> int | None:
    """The highest applied version, or None when the history table does not exist yet."""
    exists = conn.execute(SELECT_HISTORY_EXISTS).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(SELECT_SCHEMA_VERSION).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
