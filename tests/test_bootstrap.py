from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from chalicelib.bootstrap import CORE_SYMBOLS, bootstrap
from chalicelib.config import MIGRATIONS_DIR
from chalicelib.errors import MigrationError
from chalicelib.keys import repository as keys_repository
from chalicelib.keys import tokens
from chalicelib.migrations import discover_migrations, get_migration_history


@pytest.fixture
def empty_conn(empty_database_url: str):
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        yield conn


def test_fresh_database_is_migrated_keyed_and_seeded(empty_conn):
    summary = bootstrap(empty_conn)

    assert summary.migrations_applied == [m.filename for m in discover_migrations()]
    assert summary.schema_ok is True
    assert summary.admin_key_name == "bootstrap-admin"
    assert summary.symbols_seeded == 15
    assert summary.changed is True


def test_admin_key_is_well_formed_and_found_by_its_hash(empty_conn):
    summary = bootstrap(empty_conn)

    assert summary.admin_key is not None
    assert tokens.is_well_formed(summary.admin_key)
    stored = keys_repository.get_status_by_hash(empty_conn, tokens.hash_key(summary.admin_key))
    assert stored is not None
    assert stored.scopes == ["read", "admin"]
    assert stored.active is True
    assert stored.expires_at is None
    assert stored.key_prefix == summary.admin_key[:12]
    names = keys_repository.names_starting_with(empty_conn, "bootstrap-admin")
    assert names == ["bootstrap-admin"]
    raw_in_db = empty_conn.execute(
        "SELECT count(*) FROM api_keys WHERE key_prefix = %s OR name = %s",
        (summary.admin_key, summary.admin_key),
    ).fetchone()
    assert raw_in_db == (0,)


def test_seeds_ten_stocks_and_etfs_and_five_crypto(empty_conn):
    bootstrap(empty_conn)

    rows = empty_conn.execute(
        "SELECT symbol, asset_class, timeframes, active FROM tracked_symbols ORDER BY symbol"
    ).fetchall()

    assert sorted((s, c) for s, c, _, _ in rows) == sorted(CORE_SYMBOLS)
    assert sum(1 for _, c, _, _ in rows if c in ("stock", "etf")) == 10
    assert sum(1 for _, c, _, _ in rows if c == "crypto") == 5
    assert {tuple(t) for _, _, t, _ in rows} == {("1d",)}
    assert all(active for *_, active in rows)


def test_second_run_changes_nothing(empty_conn):
    bootstrap(empty_conn)

    again = bootstrap(empty_conn)

    assert again.migrations_applied == []
    assert again.admin_key is None
    assert again.symbols_seeded == 0
    assert again.changed is False
    assert empty_conn.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)


def test_new_admin_key_forces_another_with_a_fresh_name(empty_conn):
    first = bootstrap(empty_conn)

    second = bootstrap(empty_conn, new_admin_key=True)

    assert second.admin_key is not None
    assert second.admin_key != first.admin_key
    assert second.admin_key_name == "bootstrap-admin-2"
    assert empty_conn.execute("SELECT count(*) FROM api_keys").fetchone() == (2,)


def test_existing_database_without_an_admin_key_gets_one(empty_conn):
    bootstrap(empty_conn)
    empty_conn.execute("UPDATE api_keys SET active = false")

    summary = bootstrap(empty_conn)

    assert summary.migrations_applied == []
    assert summary.admin_key_name == "bootstrap-admin-2"


def test_expired_admin_key_does_not_count_as_one(empty_conn):
    bootstrap(empty_conn)
    empty_conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 day'")

    summary = bootstrap(empty_conn)

    assert summary.admin_key is not None


def test_a_failed_migration_stops_bootstrap_and_a_rerun_recovers(empty_conn, tmp_path: Path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    for migration in discover_migrations(MIGRATIONS_DIR):
        (directory / migration.filename).write_bytes(migration.path.read_bytes())
    broken = directory / "0900_add_broken_thing.sql"
    broken.write_text("CREATE TABLE broken_thing (id int REFERENCES nowhere);")

    with pytest.raises(MigrationError, match="0900_add_broken_thing.sql: statement 1 failed"):
        bootstrap(empty_conn, migration_options={"directory": directory})

    assert empty_conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    assert 900 not in {m.version for m in get_migration_history(empty_conn)}

    broken.write_text("CREATE TABLE broken_thing (id int);")
    summary = bootstrap(empty_conn, migration_options={"directory": directory})

    assert summary.migrations_applied == ["0900_add_broken_thing.sql"]
    assert summary.admin_key is not None
    assert summary.symbols_seeded == 15
