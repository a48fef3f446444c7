"""Entry points shared by the Lambda functions and the CLI, so both run the same code."""

from __future__ import annotations

from typing import Any

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.migrations import MigrationSummary, run_migrations


def migrate(*, dry_run: bool = False) -> MigrationSummary:
    """Apply pending migrations on a dedicated connection (the advisory lock is per session)."""
    settings = get_settings()
    limits = db.SessionLimits.for_migrations(settings)
    with db.command_session(settings, limits=limits) as conn:
        return run_migrations(conn, dry_run=dry_run, **migration_options())


def migration_options() -> dict[str, Any]:
    settings = get_settings()
    return {
        "lock_wait_seconds": settings.migration_lock_wait_seconds,
        "lock_timeout_ms": settings.migration_lock_timeout_ms,
        "statement_timeout_ms": settings.migration_statement_timeout_ms,
    }
