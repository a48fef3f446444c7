"""The migration runner: applies `migrations/NNNN_verb_noun.sql` in order, exactly once.

Guarantees (the same as Flyway's): each file runs with its history row in one transaction
(unless its first line is `-- mdw:no-transaction`); concurrent runners serialise on a session
advisory lock taken by polling, and read history only once they hold it; an applied file that
changed or vanished stops the runner before anything runs.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from chalicelib.config import MIGRATIONS_DIR, get_settings
from chalicelib.errors import MigrationError
from chalicelib.schema import MIGRATION_FILENAME, current_schema_version, verify_schema
from chalicelib.sqlsplit import split_statements

Connection = psycopg.Connection[Any]

NO_TRANSACTION_MARKER = "-- mdw:no-transaction"
# Advisory lock key shared by every runner of this schema ("mdw" in ASCII).
MIGRATION_LOCK_KEY = 0x6D6477

CREATE_HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    duration_ms integer NOT NULL
)
"""
SELECT_HISTORY = """
SELECT version, name, checksum, applied_at, applied_by, duration_ms
FROM schema_migrations ORDER BY version
"""
INSERT_HISTORY = """
INSERT INTO schema_migrations (version, name, checksum, applied_by, duration_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(applied_by)s, %(duration_ms)s)
"""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def transactional(self) -> bool:
        first_line = self.sql.lstrip("\ufeff").split("\n", 1)[0].strip()
        return first_line != NO_TRANSACTION_MARKER


class AppliedMigration(msgspec.Struct, frozen=True):
    version: int
    name: str
    checksum: str
    applied_at: datetime
    applied_by: str
    duration_ms: int


class MigrationSummary(msgspec.Struct):
    applied: list[str] = msgspec.field(default_factory=list)
    pending_before: list[str] = msgspec.field(default_factory=list)
    schema_ok: bool = False
    duration_ms: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "pending_before": self.pending_before,
            "schema_ok": self.schema_ok,
            "duration_ms": self.duration_ms,
            "dry_run": self.dry_run,
        }


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in version order; refuses unnumbered and duplicate files."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = MIGRATION_FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_verb_noun.sql")
        version = int(match["version"])
        if version in by_version:
            raise MigrationError(
                f"{path.name}: version {version:04d} is also used by {by_version[version].filename}"
            )
        raw = path.read_bytes()
        by_version[version] = Migration(
            version=version,
            name=match["name"],
            path=path,
            sql=raw.decode("utf-8"),
            checksum=hashlib.sha256(raw).hexdigest(),
        )
    return [by_version[v] for v in sorted(by_version)]


def get_migration_history(conn: Connection) -> list[AppliedMigration]:
    if current_schema_version(conn) is None:
        return []
    with conn.cursor(row_factory=class_row(AppliedMigration)) as cur:
        return cur.execute(SELECT_HISTORY).fetchall()


def pending_migrations(conn: Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Files not yet applied, after checking that history and files agree."""
    return _pending(discover_migrations(directory), get_migration_history(conn))


def _pending(files: list[Migration], history: list[AppliedMigration]) -> list[Migration]:
    by_version = {m.version: m for m in files}
    for applied in history:
        migration = by_version.get(applied.version)
        if migration is None:
            raise MigrationError(
                f"{applied.version:04d}_{applied.name}.sql was applied but its file is missing; "
                "restore it (applied migrations are never removed)"
            )
        if migration.checksum != applied.checksum:
            raise MigrationError(
                f"{migration.filename} changed after it was applied (checksum mismatch); "
                "restore the applied text and put the change in a new migration"
            )
    newest_applied = history[-1].version if history else 0
    applied_versions = {a.version for a in history}
    pending = [m for m in files if m.version not in applied_versions]
    for migration in pending:
        if migration.version < newest_applied:
            raise MigrationError(
                f"{migration.filename} is older than the applied version {newest_applied:04d}; "
                "renumber it after the newest migration"
            )
    return pending


def default_applied_by() -> str:
    function = get_settings().function_name
    if function:
        return f"lambda:{function}"
    # Only a runner needs these; API containers never import them.
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def run_migrations(
    conn: Connection,
    *,
    directory: Path = MIGRATIONS_DIR,
    dry_run: bool = False,
    applied_by: str | None = None,
    lock_wait_seconds: float = 120.0,
    lock_timeout_ms: int = 10_000,
    statement_timeout_ms: int = 600_000,
) -> MigrationSummary:
    """Apply pending migrations on an autocommit connection; return what happened."""
    started = time.perf_counter()
    files = discover_migrations(directory)
    if not conn.autocommit:
        raise MigrationError("the migration runner needs an autocommit connection")
    who = applied_by or default_applied_by()
    summary = MigrationSummary(dry_run=dry_run)

    _acquire_lock(conn, lock_wait_seconds)
    try:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false)",
            (str(int(lock_timeout_ms)), str(int(statement_timeout_ms))),
        )
        if not dry_run:
            conn.execute(CREATE_HISTORY_TABLE)
        pending = _pending(files, get_migration_history(conn))
        summary.pending_before = [m.filename for m in pending]
        if not dry_run:
            for migration in pending:
                _apply(conn, migration, who)
                summary.applied.append(migration.filename)
    finally:
        _release_lock(conn)
    summary.schema_ok = verify_schema(conn).ok
    summary.duration_ms = round((time.perf_counter() - started) * 1000)
    return summary


def _acquire_lock(conn: Connection, wait_seconds: float) -> None:
    # Polling keeps every runner responsive to its own deadline; a blocking
    # pg_advisory_lock would wait on the server for as long as the holder runs.
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another migration run held the migration lock for over {wait_seconds:g}s; "
                "try again when it finishes"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _release_lock(conn: Connection) -> None:
    if conn.closed or conn.broken:
        return  # the server released the session lock with the session
    try:
        conn.execute("RESET lock_timeout")
        conn.execute("RESET statement_timeout")
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    except psycopg.Error:
        conn.close()


def _apply(conn: Connection, migration: Migration, applied_by: str) -> None:
    started = time.perf_counter()
    statements = split_statements(migration.sql)
    if migration.transactional:
        with conn.transaction():
            _execute_all(conn, migration, statements)
            _record(conn, migration, applied_by, started)
    else:
        _execute_all(conn, migration, statements)
        with conn.transaction():
            _record(conn, migration, applied_by, started)


def _execute_all(conn: Connection, migration: Migration, statements: list[str]) -> None:
    for number, statement in enumerate(statements, start=1):
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            shown = " ".join(statement.split())
            if len(shown) > 300:
                shown = shown[:297] + "..."
            reason = (exc.diag.message_primary or str(exc)).strip()
            raise MigrationError(
                f"{migration.filename}: statement {number} failed: {reason}",
                details={"file": migration.filename, "statement": shown},
            ) from exc


def _record(conn: Connection, migration: Migration, applied_by: str, started: float) -> None:
    conn.execute(
        INSERT_HISTORY,
        {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "applied_by": applied_by,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        },
    )
