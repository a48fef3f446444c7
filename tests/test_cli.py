from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from chalicelib.cli import main
from chalicelib.config import PROJECT_ROOT
from chalicelib.migrations import discover_migrations

MIGRATION_FILES = [m.filename for m in discover_migrations()]


@pytest.fixture
def cli(empty_database_url, set_env):
    set_env(DATABASE_URL=empty_database_url)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_db_migrate_dry_run_lists_pending(cli):
    result = cli("db", "migrate", "--dry-run")

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"pending: {len(MIGRATION_FILES)}",
        *[f"  {name}" for name in MIGRATION_FILES],
    ]


def test_db_migrate_then_status_then_verify(cli):
    migrated = cli("db", "migrate")
    status = cli("db", "status")
    verified = cli("db", "verify")

    assert migrated.exit_code == 0
    assert [line for line in migrated.output.splitlines() if line.startswith("applied ")] == [
        f"applied {name}" for name in MIGRATION_FILES
    ]
    assert "schema verified" in migrated.output
    assert status.exit_code == 0
    assert status.output.splitlines()[-1] == f"{len(MIGRATION_FILES)} applied, 0 pending"
    assert verified.exit_code == 0
    assert verified.output.startswith("schema ok (")


def test_db_verify_fails_on_an_empty_database(cli):
    result = cli("db", "verify")

    assert result.exit_code == 1
    assert "missing table:api_keys" in result.output


def test_bootstrap_prints_the_key_once_then_says_nothing_to_do(cli):
    first = cli("bootstrap")
    second = cli("bootstrap")

    assert first.exit_code == 0
    key_lines = [
        line.strip() for line in first.output.splitlines() if line.strip().startswith("mdw_")
    ]
    assert len(key_lines) == 1
    assert f"migrations applied: {len(MIGRATION_FILES)}" in first.output
    assert "symbols seeded: 15" in first.output
    assert second.exit_code == 0
    assert key_lines[0] not in second.output
    assert "an active admin key exists" in second.output
    assert second.output.splitlines()[-1] == "nothing to do: already bootstrapped"


def test_unreachable_database_is_one_line_without_traceback(set_env):
    set_env(DATABASE_URL="postgresql://mdw:pw-secret@127.0.0.1:1/warehouse")

    result = CliRunner().invoke(main, ["db", "status"])

    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "Error: the database is unavailable; retry shortly"
    assert "Traceback" not in result.output
    assert "pw-secret" not in result.output


def test_bad_setting_is_one_line(set_env):
    set_env(DATABASE_CONNECT_TIMEOUT_SECONDS="soon")

    result = CliRunner().invoke(main, ["db", "status"])

    assert result.exit_code == 1
    assert result.output == (
        "Error: DATABASE_CONNECT_TIMEOUT_SECONDS must be a whole number, got 'soon'\n"
    )


def test_unknown_arguments_exit_non_zero_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "db", "migrate", "--frobnicate"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2
    assert "No such option '--frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr
