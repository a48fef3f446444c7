"""First start of a deployment or a laptop: migrate, verify, first admin key, core symbols.

Idempotent: a second run applies nothing, creates no key and seeds nothing, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from chalicelib.errors import MigrationError
from chalicelib.keys import repository as keys_repository
from chalicelib.keys import service as keys_service
from chalicelib.market.timeframes import DEFAULT_TIMEFRAMES
from chalicelib.migrations import run_migrations
from chalicelib.schema import verify_schema
from chalicelib.symbols import repository as symbols_repository

Connection = psycopg.Connection[Any]

CORE_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("AAPL", "stock"),
    ("MSFT", "stock"),
    ("GOOGL", "stock"),
    ("AMZN", "stock"),
    ("NVDA", "stock"),
    ("META", "stock"),
    ("TSLA", "stock"),
    ("SPY", "etf"),
    ("QQQ", "etf"),
    ("IWM", "etf"),
    ("BTC", "crypto"),
    ("ETH", "crypto"),
    ("SOL", "crypto"),
    ("XRP", "crypto"),
    ("DOGE", "crypto"),
)


@dataclass(slots=True)
class BootstrapSummary:
    migrations_applied: list[str] = field(default_factory=list)
    schema_ok: bool = False
    admin_key: str | None = None
    admin_key_name: str | None = None
    symbols_seeded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.migrations_applied or self.admin_key or self.symbols_seeded)


def bootstrap(
    conn: Connection,
    *,
    new_admin_key: bool = False,
    migration_options: dict[str, Any] | None = None,
) -> BootstrapSummary:
    """Run on an autocommit connection; each step commits on its own, so a failed step can be
    re-run without undoing the ones before it."""
    summary = BootstrapSummary()
    migrated = run_migrations(conn, **(migration_options or {}))
    summary.migrations_applied = migrated.applied
    report = verify_schema(conn)
    summary.schema_ok = report.ok
    if not report.ok:
        raise MigrationError(
            "schema verification failed after migrating", details={"missing": report.missing}
        )
    with conn.transaction():
        # Serialise concurrent bootstraps so two first runs cannot both create a key.
        keys_repository.lock_keys_for_bootstrap(conn)
        if new_admin_key or not keys_repository.has_active_admin_key(conn):
            name = _unused_admin_name(conn)
            created = keys_service.create_key(conn, name=name, scopes=["read", "admin"])
            summary.admin_key = created.raw_key
            summary.admin_key_name = name
    with conn.transaction():
        summary.symbols_seeded = symbols_repository.insert_symbols_if_absent(
            conn, list(CORE_SYMBOLS), timeframes=list(DEFAULT_TIMEFRAMES)
        )
    return summary


def _unused_admin_name(conn: Connection) -> str:
    taken = set(keys_repository.names_starting_with(conn, "bootstrap-admin"))
    if "bootstrap-admin" not in taken:
        return "bootstrap-admin"
    number = 2
    while f"bootstrap-admin-{number}" in taken:
        number += 1
    return f"bootstrap-admin-{number}"
