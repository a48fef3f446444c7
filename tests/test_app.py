"""The Lambda functions defined in app.py, invoked as Lambda would."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from chalice.test import Client

from app import app
from chalicelib import container
from chalicelib.config import PROJECT_ROOT
from chalicelib.errors import MigrationError, ServiceUnavailable
from chalicelib.health.routes import ensure_schema_current
from chalicelib.migrations import discover_migrations
from chalicelib.schema import latest_version


@pytest.fixture
def empty_db_settings(empty_database_url, set_env):
    set_env(DATABASE_URL=empty_database_url)
    return empty_database_url


def test_migrate_function_applies_and_summarises(empty_db_settings):
    with Client(app, stage_name="local") as client:
        first = client.lambda_.invoke("migrate", {}).payload
        second = client.lambda_.invoke("migrate", {}).payload

    files = [m.filename for m in discover_migrations()]
    assert first["applied"] == files
    assert first["pending_before"] == files
    assert first["schema_ok"] is True
    assert first["duration_ms"] >= 0
    assert second["applied"] == []
    assert second["pending_before"] == []


def test_migrate_function_dry_run(empty_db_settings):
    with Client(app, stage_name="local") as client:
        result = client.lambda_.invoke("migrate", {"dry_run": True}).payload

    assert result["dry_run"] is True
    assert result["applied"] == []
    assert result["pending_before"] == [m.filename for m in discover_migrations()]
    assert result["schema_ok"] is False


def test_migrate_function_fails_loudly_on_a_broken_history(empty_db_settings):
    with psycopg.connect(empty_db_settings, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text, checksum text,"
            " applied_at timestamptz, applied_by text, duration_ms int)"
        )
        conn.execute(
            "INSERT INTO schema_migrations"
            " VALUES (1, 'create_core_tables', 'tampered', now(), 'x', 1)"
        )

    with (
        Client(app, stage_name="local") as client,
        pytest.raises(MigrationError, match="changed after it was applied"),
    ):
        client.lambda_.invoke("migrate", {})


def test_startup_check_refuses_until_migrated_then_passes(empty_db_settings):
    with pytest.raises(ServiceUnavailable, match="this code expects"):
        ensure_schema_current()

    with Client(app, stage_name="local") as client:
        client.lambda_.invoke("migrate", {})
    ensure_schema_current()  # no longer raises: the failure was not remembered


def test_startup_check_runs_once_per_container(empty_db_settings):
    with Client(app, stage_name="local") as client:
        client.lambda_.invoke("migrate", {})
    ensure_schema_current()
    with psycopg.connect(empty_db_settings, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (latest_version(),))

    ensure_schema_current()  # remembered: no second query, no error
    container.reset()  # a new container
    with pytest.raises(ServiceUnavailable):
        ensure_schema_current()


def test_a_failure_inside_a_middleware_is_answered_in_the_one_error_body(
    client, pinned_db, monkeypatch
):
    import app as app_module
    from tests.factories import make_admin_key

    key = make_admin_key(pinned_db)

    def broken() -> None:
        raise RuntimeError("schema check exploded: password=Sup3r")

    monkeypatch.setattr(app_module, "ensure_schema_current", broken)

    response = client.http.get(
        "/api/v1/symbols", headers={"Authorization": f"Bearer {key.raw_key}"}
    )
    health = client.http.get("/openapi.json")

    assert response.status_code == 500
    assert response.json_body == {
        "error": {
            "code": "internal_error",
            "message": "internal error; the request was not completed",
        }
    }
    assert "Sup3r" not in response.body.decode()
    assert health.status_code == 200


def test_importing_the_app_leaves_logging_alone_until_the_first_invocation(tmp_path):
    # A fresh interpreter, as a Lambda container starts: importing the app configures nothing;
    # the first invocation makes the runtime's handler write JSON lines.
    script = """
import logging, sys
root = logging.getLogger()
root.addHandler(logging.StreamHandler(sys.stderr))  # as the Lambda runtime installs one
import app
from chalicelib.ops.observability import JsonFormatter
before = [type(h.formatter).__name__ for h in root.handlers]
from chalice.test import Client
with Client(app.app, stage_name="local") as client:
    status = client.http.get("/openapi.json").status_code
after = [isinstance(h.formatter, JsonFormatter) for h in root.handlers]
print(before, status, after)
"""
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "mdw-dev-api_handler",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "['NoneType'] 200 [True]", result.stderr
