"""The custom authorizer: through chalice.test.Client (the local gateway runs it on every
request) and invoked with the Lambda-shaped TOKEN event API Gateway sends."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import app
from chalicelib import db
from chalicelib.keys import tokens
from chalicelib.keys.authorizer import bearer_token, parseable_prefix, policy_route
from tests.factories import make_admin_key, make_key
from tests.keys.helpers import audit_rows

READ_ROUTE = "/api/v1/symbols"
ADMIN_ROUTE = "/api/v1/admin/api-keys"
GATEWAY_401 = b'{"message":"Unauthorized"}'
GATEWAY_403 = b'{"Message": "User is not authorized to access this resource"}'
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/api/GET/api/v1/symbols"


class CountingSource:
    """A connection source that counts how often it is asked, and refuses."""

    def __init__(self) -> None:
        self.asked = 0

    @contextmanager
    def connection(self) -> Any:
        self.asked += 1
        raise AssertionError("the authorizer touched the database")
        yield  # pragma: no cover


def with_bad_checksum(raw_key: str) -> str:
    last = raw_key[-1]
    return raw_key[:-1] + ("A" if last != "A" else "B")


VALID_LOOKING = tokens.generate_key()

MALFORMED_HEADERS = [
    pytest.param("", id="empty-header"),
    pytest.param("Bearer ", id="bearer-alone"),
    pytest.param("Bearer", id="bearer-without-space"),
    pytest.param(f"Basic {VALID_LOOKING}", id="another-scheme"),
    pytest.param(f"Token {VALID_LOOKING}", id="token-scheme"),
    pytest.param(VALID_LOOKING, id="no-scheme"),
    pytest.param("Bearer " + "a" * 10240, id="10kb-token"),
    pytest.param("Bearer mdw_" + "ü" * 49, id="non-ascii"),
    pytest.param("Bearer ' OR '1'='1' --", id="sql-injection"),
    pytest.param(f"Bearer {VALID_LOOKING}'; DROP TABLE api_keys; --", id="sql-after-a-key"),
    pytest.param(f"Bearer {with_bad_checksum(VALID_LOOKING)}", id="bad-checksum"),
    pytest.param(f"Bearer {VALID_LOOKING[:-1]}", id="truncated"),
    pytest.param(f"Bearer {VALID_LOOKING}x", id="one-character-too-long"),
    pytest.param(f"Bearer {VALID_LOOKING.replace('mdw_', 'mdx_')}", id="wrong-prefix"),
]


@pytest.mark.parametrize("header", MALFORMED_HEADERS)
def test_a_malformed_key_is_401_without_any_database_query(client, header):
    source = CountingSource()
    db.set_database(source)

    response = client.http.get(READ_ROUTE, headers={"Authorization": header})

    assert response.status_code == 401
    assert response.body == GATEWAY_401
    assert source.asked == 0


def test_a_missing_header_is_401_from_the_gateway_itself(client):
    source = CountingSource()
    db.set_database(source)

    response = client.http.get(READ_ROUTE)

    assert response.status_code == 401
    assert response.body == GATEWAY_401
    assert source.asked == 0


def test_an_unknown_key_is_401_and_recorded_by_prefix_only(client, pinned_db):
    unknown = tokens.generate_key()

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {unknown}"})

    assert response.status_code == 401
    assert response.body == GATEWAY_401
    rows = audit_rows(pinned_db)
    assert len(rows) == 1
    row = rows[0]
    assert row["event"] == "auth_failed"
    assert row["key_id"] is None
    assert row["reason"] == "unknown_key"
    assert row["key_prefix"] == unknown[:12]
    assert (row["method"], row["path"], row["status_code"]) == ("GET", READ_ROUTE, 401)
    assert unknown not in str(row)


def test_a_revoked_key_is_401_and_recorded_with_its_id(client, pinned_db):
    created = make_key(pinned_db, name="revoked-key")
    pinned_db.execute("UPDATE api_keys SET active = false WHERE id = %s", (created.key.id,))

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {created.raw_key}"})

    assert response.status_code == 401
    failures = [row for row in audit_rows(pinned_db) if row["event"] == "auth_failed"]
    assert [(row["key_id"], row["reason"]) for row in failures] == [(created.key.id, "revoked")]


def test_an_expired_key_is_401(client, pinned_db):
    created = make_key(pinned_db, expires_at=datetime.now(UTC) + timedelta(hours=1))
    pinned_db.execute(
        "UPDATE api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = %s",
        (created.key.id,),
    )

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {created.raw_key}"})

    assert response.status_code == 401
    assert audit_rows(pinned_db)[-1]["reason"] == "expired"


def test_the_previous_key_is_refused_once_its_grace_period_ends(client, pinned_db):
    old = make_key(pinned_db)
    pinned_db.execute(
        "UPDATE api_keys SET previous_key_hash = key_hash, previous_key_prefix = key_prefix,"
        " previous_key_expires_at = clock_timestamp() - interval '1 second',"
        " key_hash = %s, key_prefix = 'mdw_00000000' WHERE id = %s",
        (b"\x00" * 32, old.key.id),
    )

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {old.raw_key}"})

    assert response.status_code == 401
    assert audit_rows(pinned_db)[-1]["reason"] == "rotated_out"


def test_the_previous_key_never_outlives_the_key_itself(client, pinned_db):
    old = make_key(pinned_db)
    pinned_db.execute(
        "UPDATE api_keys SET previous_key_hash = key_hash, previous_key_prefix = key_prefix,"
        " previous_key_expires_at = clock_timestamp() + interval '1 hour',"
        " expires_at = clock_timestamp() - interval '1 second',"
        " key_hash = %s, key_prefix = 'mdw_00000000' WHERE id = %s",
        (b"\x00" * 32, old.key.id),
    )

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {old.raw_key}"})

    assert response.status_code == 401
    assert audit_rows(pinned_db)[-1]["reason"] == "expired"


def test_a_read_key_on_an_admin_route_is_403_from_the_gateway(client, pinned_db):
    created = make_key(pinned_db, scopes=["read"])

    response = client.http.get(ADMIN_ROUTE, headers={"Authorization": f"Bearer {created.raw_key}"})

    assert response.status_code == 403
    assert response.body == GATEWAY_403


def test_the_scheme_is_case_insensitive(client, pinned_db):
    created = make_key(pinned_db)

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"bearer {created.raw_key}"})

    assert response.status_code == 200


def test_an_unreachable_database_is_503_not_a_bad_key(client):
    db.set_database(db.Database("postgresql://mdw@127.0.0.1:1/nowhere", connect_timeout=1))

    response = client.http.get(READ_ROUTE, headers={"Authorization": f"Bearer {VALID_LOOKING}"})

    # The same status, body and Retry-After as the template's AUTHORIZER_FAILURE response.
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json_body == {
        "error": {
            "code": "service_unavailable",
            "message": "the API key could not be checked right now; retry shortly",
        }
    }


# --- the Lambda-shaped event -----------------------------------------------------------------


def token_event(raw_key: str, method_arn: str = METHOD_ARN) -> dict[str, str]:
    return {"type": "TOKEN", "authorizationToken": f"Bearer {raw_key}", "methodArn": method_arn}


def allowed_resources(payload: dict[str, Any]) -> list[str]:
    (statement,) = payload["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    resources: list[str] = statement["Resource"]
    return resources


def test_the_token_event_returns_a_policy_for_every_route_of_an_admin_key(client, pinned_db):
    created = make_admin_key(pinned_db)

    payload = client.lambda_.invoke("api_key_authorizer", token_event(created.raw_key)).payload

    assert payload["principalId"] == str(created.key.id)
    assert payload["context"] == {
        "key_id": str(created.key.id),
        "key_prefix": created.key.key_prefix,
        "credential": "current",
        "scopes": "read,admin",
    }
    assert all(isinstance(value, str) for value in payload["context"].values())
    base = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/api/*"
    expected = sorted({base + policy_route(route) for route in app.routes})
    assert sorted(allowed_resources(payload)) == expected
    assert f"{base}/api/v1/admin/api-keys/*/rotate" in expected


def test_the_token_event_of_a_read_key_lists_no_admin_route(client, pinned_db):
    created = make_key(pinned_db, scopes=["read"])

    payload = client.lambda_.invoke("api_key_authorizer", token_event(created.raw_key)).payload

    resources = allowed_resources(payload)
    assert payload["context"]["scopes"] == "read"
    base = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/api/*"
    # The pages and /health are public: listed, but no request to them asks the authorizer.
    assert sorted(resources) == [
        f"{base}/api/v1/bars",
        f"{base}/api/v1/historical/*",
        f"{base}/api/v1/latest",
        f"{base}/api/v1/status",
        f"{base}/api/v1/symbols",
        f"{base}/api/v1/symbols/*",
        f"{base}/console",
        f"{base}/docs",
        f"{base}/health",
        f"{base}/openapi.json",
        f"{base}/static/*",
        f"{base}/static/vendor/*",
        f"{base}/v2/aggs/grouped/locale/global/market/crypto/*",
        f"{base}/v2/aggs/grouped/locale/us/market/stocks/*",
        f"{base}/v2/aggs/ticker/*/range/*/*/*/*",
        f"{base}/v3/reference/splits",
    ]


def test_the_token_event_with_a_bad_key_raises_unauthorized_as_on_aws(client, monkeypatch):
    # In the Lambda zip chalice.local does not exist: the authorizer raises the plain
    # Exception("Unauthorized") that API Gateway turns into 401.
    monkeypatch.setitem(sys.modules, "chalice.local", None)

    with pytest.raises(Exception, match="^Unauthorized$") as raised:
        client.lambda_.invoke("api_key_authorizer", token_event("mdw_not-a-key"))

    assert type(raised.value) is Exception


def test_the_token_event_with_a_bad_key_raises_the_local_servers_401_locally(client):
    from chalice.local import NotAuthorizedError

    with pytest.raises(NotAuthorizedError) as raised:
        client.lambda_.invoke("api_key_authorizer", token_event("mdw_not-a-key"))

    assert raised.value.CODE == 401
    assert raised.value.body == GATEWAY_401


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer ", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        ("Bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


def test_parseable_prefix_never_reveals_more_than_a_display_prefix():
    raw_key = tokens.generate_key()

    assert parseable_prefix(raw_key) == raw_key[:12]
    assert parseable_prefix(with_bad_checksum(raw_key)) == raw_key[:12]
    assert parseable_prefix("mdw_short") is None
    assert parseable_prefix("ghp_" + raw_key[4:]) is None


def test_policy_route_turns_path_parameters_into_wildcards():
    assert policy_route("/api/v1/admin/api-keys/{key_id}/audit") == "/api/v1/admin/api-keys/*/audit"
    assert policy_route("/api/v1/symbols") == "/api/v1/symbols"
