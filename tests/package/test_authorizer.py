"""The packaged authorizer, in a container of its own that never imports app.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.keys import tokens
from chalicelib.keys.authorizer import policy_route
from chalicelib.route_table import ROUTES
from tests.factories import make_admin_key, make_key
from tests.package.conftest import STAGE_PREFIX, Container, StartContainer

UNAUTHORIZED = {"errorType": "Exception", "errorMessage": "Unauthorized"}


def token_event(header: str, path: str = "/api/v1/symbols") -> dict[str, Any]:
    return {
        "type": "TOKEN",
        "authorizationToken": header,
        "methodArn": f"{STAGE_PREFIX}/GET{path}",
    }


def allowed_resources(policy: dict[str, Any]) -> set[str]:
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    return set(statement["Resource"])


def resource(path: str) -> str:
    return f"{STAGE_PREFIX}/*/{policy_route(path).lstrip('/')}"


@pytest.fixture(scope="module")
def authorizer(start_container: StartContainer, migrated: Any) -> Container:
    return start_container("ApiKeyAuthorizer")


def test_the_container_imports_neither_app_nor_the_command_line(authorizer: Container) -> None:
    loaded = set(authorizer.modules)

    assert "chalicelib.keys.authorizer" in loaded
    assert not {"app", "chalicelib.cli", "chalicelib.keys.routes"} & loaded


def test_an_admin_key_is_allowed_every_route_with_its_context(
    authorizer: Container, package_conn: Any
) -> None:
    key = make_admin_key(package_conn)

    policy = authorizer.result(token_event(f"Bearer {key.raw_key}"))

    assert policy["principalId"] == str(key.key.id)
    assert allowed_resources(policy) == {resource(path) for path in ROUTES}
    assert policy["context"] == {
        "key_id": str(key.key.id),
        "key_prefix": key.key.key_prefix,
        "credential": "current",
        "scopes": "read,admin",
    }


def test_a_read_key_is_allowed_no_admin_route(authorizer: Container, package_conn: Any) -> None:
    key = make_key(package_conn, scopes=["read"])

    policy = authorizer.result(token_event(f"Bearer {key.raw_key}"))

    assert allowed_resources(policy) == {
        resource(path) for path in ROUTES if not path.startswith("/api/v1/admin/")
    }
    assert policy["context"]["scopes"] == "read"


def test_unknown_malformed_revoked_and_expired_keys_are_unauthorized(
    authorizer: Container, package_conn: Any
) -> None:
    revoked = make_key(package_conn)
    package_conn.execute("UPDATE api_keys SET active = false WHERE id = %s", (revoked.key.id,))
    expired = make_key(package_conn)
    package_conn.execute(
        "UPDATE api_keys SET expires_at = %s WHERE id = %s",
        (datetime.now(UTC) - timedelta(minutes=1), expired.key.id),
    )

    for header in (
        f"Bearer {tokens.generate_key()}",
        "Bearer mdw_not-a-key",
        "Basic dXNlcjpwYXNz",
        "",
        f"Bearer {revoked.raw_key}",
        f"Bearer {expired.raw_key}",
    ):
        assert authorizer.invoke(token_event(header)) == UNAUTHORIZED, header


def test_the_database_down_is_a_failure_not_a_refusal(
    start_container: StartContainer, aws_clients: Any, migrated: Any, package_conn: Any
) -> None:
    """Any error but "Unauthorized" is API Gateway's AUTHORIZER_FAILURE (503 in the template's
    gateway responses): an outage never looks like a bad key."""
    key = make_admin_key(package_conn)
    unreachable = aws_clients("secretsmanager").create_secret(
        Name="mdw/database-unreachable",
        SecretString=json.dumps(
            {
                "host": "127.0.0.1",
                "port": "9",
                "username": "mdw",
                "password": "Sup3r-s3cret",
                "dbname": "mdw",
            }
        ),
    )["ARN"]
    container = start_container("ApiKeyAuthorizer", DATABASE_SECRET_ARN=unreachable)

    answer = container.invoke(token_event(f"Bearer {key.raw_key}"))
    log = container.stop()

    assert answer["errorType"] != "Exception"
    assert answer["errorMessage"] != "Unauthorized"
    assert "Sup3r-s3cret" not in json.dumps(answer) + log
    assert key.raw_key not in log


def test_its_log_lines_are_json(start_container: StartContainer, migrated: Any) -> None:
    container = start_container("ApiKeyAuthorizer")
    container.invoke(token_event(f"Bearer {tokens.generate_key()}"))

    lines = [line for line in container.stop().splitlines() if line.strip()]

    assert lines
    records = [json.loads(line) for line in lines]
    assert {record["function"] for record in records} == {"mdw-prod-ApiKeyAuthorizer"}
    assert any("refused" in record.get("message", "") for record in records)


def test_events_missing_fields_are_refused_not_crashed(
    authorizer: Container, package_conn: Any
) -> None:
    key = make_admin_key(package_conn)
    good = token_event(f"Bearer {key.raw_key}")

    for event in (
        {},
        {"type": "TOKEN"},
        {name: value for name, value in good.items() if name != "authorizationToken"},
        {name: value for name, value in good.items() if name != "methodArn"},
        {**good, "methodArn": "not-an-arn"},
    ):
        assert authorizer.invoke(event) == UNAUTHORIZED, event
