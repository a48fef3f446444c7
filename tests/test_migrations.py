from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from chalicelib.config import MIGRATIONS_DIR, PROJECT_ROOT
from chalicelib.errors import MigrationError
from chalicelib.migrations import (
    MIGRATION_LOCK_KEY,
    discover_migrations,
    get_migration_history,
    pending_migrations,
    run_migrations,
)
from chalicelib.schema import latest_version, verify_schema


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(sql).lstrip())
    return path


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    write(directory, "0001_create_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write(directory, "0002_add_label.sql", "ALTER TABLE things ADD COLUMN label text;")
    write(directory, "0003_insert_first_thing.sql", "INSERT INTO things VALUES (1, 'first');")
    return directory


@pytest.fixture
def empty_conn(empty_database_url: str):
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        yield conn


def history_versions(conn) -> list[int]:
    return [row.version for row in get_migration_history(conn)]


def test_applies_files_in_version_order(empty_conn, migrations_dir):
    summary = run_migrations(empty_conn, directory=migrations_dir)

    assert summary.applied == [
        "0001_create_things.sql",
        "0002_add_label.sql",
        "0003_insert_first_thing.sql",
    ]
    assert summary.pending_before == summary.applied
    assert history_versions(empty_conn) == [1, 2, 3]
    assert empty_conn.execute("SELECT id, label FROM things").fetchall() == [(1, "first")]


def test_second_run_applies_nothing(empty_conn, migrations_dir):
    run_migrations(empty_conn, directory=migrations_dir)

    summary = run_migrations(empty_conn, directory=migrations_dir)

    assert summary.applied == []
    assert summary.pending_before == []
    assert history_versions(empty_conn) == [1, 2, 3]


def test_history_records_checksum_author_and_duration(empty_conn, migrations_dir):
    run_migrations(empty_conn, directory=migrations_dir, applied_by="ops@example")

    first = get_migration_history(empty_conn)[0]

    expected = hashlib.sha256((migrations_dir / "0001_create_things.sql").read_bytes())
    assert first.version == 1
    assert first.name == "create_things"
    assert first.checksum == expected.hexdigest()
    assert first.applied_by == "ops@example"
    assert first.duration_ms >= 0
    assert first.applied_at is not None


def test_real_migrations_produce_the_verified_schema(empty_conn):
    before = verify_schema(empty_conn)
    assert before.ok is False
    assert before.checks["table:api_keys"] is False

    summary = run_migrations(empty_conn)

    after = verify_schema(empty_conn)
    assert summary.schema_ok is True
    assert after.ok is True
    assert after.missing == []
    assert after.checks["index:api_keys_key_hash_key"] is True
    assert after.checks["column:bars.volume"] is True


def test_verify_schema_names_what_is_missing(empty_conn):
    run_migrations(empty_conn)
    empty_conn.execute("DROP TABLE backfill_runs")
    empty_conn.execute("DROP INDEX api_key_audit_occurred_at_idx")

    report = verify_schema(empty_conn)

    assert report.ok is False
    assert "table:backfill_runs" in report.missing
    assert "column:backfill_runs.status" in report.missing
    assert "index:api_key_audit_occurred_at_idx" in report.missing
    assert report.checks["table:bars"] is True


def test_failed_statement_rolls_back_its_file_and_names_it(empty_conn, migrations_dir):
    write(
        migrations_dir,
        "0004_break_things.sql",
        """
        CREATE TABLE half_done (id int);
        INSERT INTO no_such_table VALUES (1);
        """,
    )

    with pytest.raises(MigrationError) as caught:
        run_migrations(empty_conn, directory=migrations_dir)

    error = caught.value
    assert error.message.startswith("0004_break_things.sql: statement 2 failed:")
    assert 'relation "no_such_table" does not exist' in error.message
    assert error.details == {
        "file": "0004_break_things.sql",
        "statement": "INSERT INTO no_such_table VALUES (1)",
    }
    assert history_versions(empty_conn) == [1, 2, 3]
    exists = empty_conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert exists == (None,)


def test_failure_leaves_the_runner_usable_and_a_fix_applies(empty_conn, migrations_dir):
    broken = write(
        migrations_dir, "0004_add_flag.sql", "ALTER TABLE things ADD COLUMN flag bool DEFAULT;"
    )
    with pytest.raises(MigrationError):
        run_migrations(empty_conn, directory=migrations_dir)

    broken.write_text("ALTER TABLE things ADD COLUMN flag bool DEFAULT false;")
    summary = run_migrations(empty_conn, directory=migrations_dir)

    assert summary.applied == ["0004_add_flag.sql"]
    assert history_versions(empty_conn) == [1, 2, 3, 4]


def test_refuses_when_an_applied_file_changed(empty_conn, migrations_dir):
    run_migrations(empty_conn, directory=migrations_dir)
    (migrations_dir / "0002_add_label.sql").write_text("ALTER TABLE things ADD COLUMN tag text;")
    write(migrations_dir, "0004_more.sql", "CREATE TABLE more (id int);")

    with pytest.raises(MigrationError, match=r"^0002_add_label\.sql changed after it was applied"):
        run_migrations(empty_conn, directory=migrations_dir)

    assert history_versions(empty_conn) == [1, 2, 3]
    assert empty_conn.execute("SELECT to_regclass('more')").fetchone() == (None,)


def test_refuses_when_an_applied_file_is_missing(empty_conn, migrations_dir):
    run_migrations(empty_conn, directory=migrations_dir)
    (migrations_dir / "0002_add_label.sql").unlink()

    with pytest.raises(
        MigrationError, match=r"^0002_add_label\.sql was applied but its file is missing"
    ):
        run_migrations(empty_conn, directory=migrations_dir)


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("add_things.sql", r"add_things\.sql: migration files must be named NNNN_verb_noun\.sql"),
        ("12_add_things.sql", r"12_add_things\.sql: migration files must be named"),
        ("0004_Add-Things.sql", r"0004_Add-Things\.sql: migration files must be named"),
        (
            "0002_add_other.sql",
            r"0002_add_other\.sql: version 0002 is also used by 0002_add_label\.sql",
        ),
    ],
)
def test_refuses_unnumbered_and_duplicate_files(empty_conn, migrations_dir, filename, message):
    write(migrations_dir, filename, "SELECT 1;")

    with pytest.raises(MigrationError, match=message):
        run_migrations(empty_conn, directory=migrations_dir)

    assert history_versions(empty_conn) == []


def test_refuses_a_new_file_older_than_the_newest_applied(empty_conn, migrations_dir):
    (migrations_dir / "0003_insert_first_thing.sql").rename(
        migrations_dir / "0005_insert_first_thing.sql"
    )
    run_migrations(empty_conn, directory=migrations_dir)
    write(migrations_dir, "0004_late.sql", "SELECT 1;")

    with pytest.raises(
        MigrationError, match=r"0004_late\.sql is older than the applied version 0005"
    ):
        run_migrations(empty_conn, directory=migrations_dir)


def test_no_transaction_file_runs_outside_a_transaction(empty_conn, migrations_dir):
    write(
        migrations_dir,
        "0004_index_things_label.sql",
        """
        -- mdw:no-transaction
        CREATE INDEX CONCURRENTLY things_label_idx ON things (label);
        """,
    )

    summary = run_migrations(empty_conn, directory=migrations_dir)

    assert summary.applied[-1] == "0004_index_things_label.sql"
    assert empty_conn.execute("SELECT to_regclass('things_label_idx')").fetchone() == (
        "things_label_idx",
    )
    assert history_versions(empty_conn) == [1, 2, 3, 4]


def test_concurrent_index_without_the_marker_fails_inside_its_transaction(
    empty_conn, migrations_dir
):
    write(
        migrations_dir,
        "0004_index_things_label.sql",
        "CREATE INDEX CONCURRENTLY things_label_idx ON things (label);",
    )

    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        run_migrations(empty_conn, directory=migrations_dir)

    assert history_versions(empty_conn) == [1, 2, 3]


def test_dry_run_lists_pending_and_changes_nothing(empty_conn, migrations_dir):
    summary = run_migrations(empty_conn, directory=migrations_dir, dry_run=True)

    assert summary.dry_run is True
    assert summary.pending_before == [
        "0001_create_things.sql",
        "0002_add_label.sql",
        "0003_insert_first_thing.sql",
    ]
    assert summary.applied == []
    assert empty_conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
    assert empty_conn.execute("SELECT to_regclass('things')").fetchone() == (None,)


def test_pending_migrations_after_a_partial_run(empty_conn, migrations_dir):
    run_migrations(empty_conn, directory=migrations_dir)
    write(migrations_dir, "0004_more.sql", "CREATE TABLE more (id int);")

    pending = pending_migrations(empty_conn, migrations_dir)

    assert [m.filename for m in pending] == ["0004_more.sql"]


def test_timeouts_are_set_while_migrating_and_reset_after(empty_conn, migrations_dir):
    write(
        migrations_dir,
        "0004_record_timeouts.sql",
        """
        CREATE TABLE seen_settings AS
        SELECT current_setting('lock_timeout') AS lock_timeout,
               current_setting('statement_timeout') AS statement_timeout;
        """,
    )

    run_migrations(
        empty_conn, directory=migrations_dir, lock_timeout_ms=1234, statement_timeout_ms=56789
    )

    assert empty_conn.execute("SELECT * FROM seen_settings").fetchone() == ("1234ms", "56789ms")
    assert empty_conn.execute("SHOW lock_timeout").fetchone() == ("0",)
    assert empty_conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_gives_up_when_another_runner_holds_the_lock(
    empty_conn, empty_database_url, migrations_dir
):
    with psycopg.connect(empty_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))

        with pytest.raises(MigrationError, match="held the migration lock for over 0.3s"):
            run_migrations(empty_conn, directory=migrations_dir, lock_wait_seconds=0.3)

    assert empty_conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_runner_needs_an_autocommit_connection(empty_database_url, migrations_dir):
    with (
        psycopg.connect(empty_database_url) as conn,
        pytest.raises(MigrationError, match="autocommit"),
    ):
        run_migrations(conn, directory=migrations_dir)


RUNNER_SCRIPT = """
import sys, psycopg
from pathlib import Path
from chalicelib.migrations import run_migrations
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    summary = run_migrations(conn, directory=Path(sys.argv[2]))
print(len(summary.applied))
"""


def test_six_concurrent_runners_apply_each_file_exactly_once(empty_database_url, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    # A slow file keeps the first runner inside the lock while the others start polling.
    write(directory, "0900_pause_for_overlap.sql", "SELECT pg_sleep(0.5);")
    expected_files = len(discover_migrations(directory))

    runners = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER_SCRIPT, empty_database_url, str(directory)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [runner.communicate(timeout=120) for runner in runners]

    assert [runner.returncode for runner in runners] == [0] * 6, results
    applied_counts = sorted(int(out.strip()) for out, _ in results)
    assert applied_counts == [0, 0, 0, 0, 0, expected_files]
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version"
        ).fetchall()
    assert len(rows) == expected_files
    assert {count for _, count in rows} == {1}


def test_latest_version_reads_the_file_names(migrations_dir):
    write(migrations_dir, "0042_add_more.sql", "SELECT 1;")
    (migrations_dir / "README.md").write_text("not a migration")

    assert latest_version(migrations_dir) == 42
