"""Security properties of API keys: no secret in logs or responses, and no admin route a
`read` key can reach, including routes added later."""

from __future__ import annotations

import base64
import logging

import pytest

from app import app
from chalicelib.keys import tokens
from chalicelib.keys.access import ADMIN_PREFIX
from chalicelib.keys.authorizer import api_key_authorizer
from tests.factories import make_admin_key, make_key
from tests.keys.helpers import gateway_event, invoke_api, send

KEYS = "/api/v1/admin/api-keys"


def secret_forms(raw_key: str) -> list[str]:
    """The raw key and every printable form of its stored hash."""
    digest = tokens.hash_key(raw_key)
    return [
        raw_key,
        raw_key[12:],  # everything past the display prefix
        digest.hex(),
        base64.b64encode(digest).decode(),
        "\\x" + digest.hex(),
    ]


def assert_no_secret(text: str, raw_keys: list[str]) -> None:
    for raw_key in raw_keys:
        for form in secret_forms(raw_key):
            assert form not in text


def test_no_raw_key_or_hash_reaches_the_logs_through_a_key_lifecycle(client, pinned_db, caplog):
    admin = make_admin_key(pinned_db).raw_key
    seen: list[str] = [admin]
    caplog.set_level(logging.DEBUG)

    created = send(client, "POST", KEYS, admin, {"name": "lifecycle", "scopes": ["read"]})
    key_id = created.json_body["id"]
    first = created.json_body["api_key"]
    seen.append(first)
    send(client, "GET", "/api/v1/symbols", first)
    send(client, "GET", KEYS, admin)
    send(client, "GET", f"{KEYS}/{key_id}", admin)
    rotated = send(client, "POST", f"{KEYS}/{key_id}/rotate", admin, {"grace_seconds": 60})
    second = rotated.json_body["api_key"]
    seen.append(second)
    send(client, "GET", "/api/v1/symbols", first)
    send(client, "GET", "/api/v1/symbols", second)
    send(client, "GET", f"{KEYS}", second)  # read key on an admin route
    send(client, "PUT", f"{KEYS}/{key_id}", admin, {"active": False})
    send(client, "GET", "/api/v1/symbols", second)  # revoked
    send(client, "GET", "/api/v1/symbols", second[:-1] + "x")  # bad checksum
    unknown = tokens.generate_key()
    seen.append(unknown)
    send(client, "GET", "/api/v1/symbols", unknown)
    send(client, "PUT", f"{KEYS}/{key_id}", admin, {"active": True})
    send(client, "GET", f"{KEYS}/{key_id}/audit", admin)
    send(client, "DELETE", f"{KEYS}/{key_id}", admin)
    send(client, "GET", "/api/v1/symbols", second)  # deleted

    logged = "\n".join(
        [caplog.text] + [str(record.args) for record in caplog.records if record.args]
    )
    assert "API key refused" in logged  # the refusals were logged, by prefix
    assert_no_secret(logged, seen)


def test_no_raw_key_or_hash_in_list_show_or_audit_responses(client, pinned_db):
    admin = make_admin_key(pinned_db).raw_key
    created = make_key(pinned_db, name="quiet")
    send(client, "GET", "/api/v1/symbols", created.raw_key)
    rotated = send(client, "POST", f"{KEYS}/{created.key.id}/rotate", admin, {"grace_seconds": 9})
    new_key = rotated.json_body["api_key"]
    send(client, "GET", "/api/v1/symbols", new_key)

    responses = [
        send(client, "GET", KEYS, admin),
        send(client, "GET", f"{KEYS}?active_only=true", admin),
        send(client, "GET", f"{KEYS}/{created.key.id}", admin),
        send(client, "GET", f"{KEYS}/{created.key.id}/audit", admin),
        send(client, "PUT", f"{KEYS}/{created.key.id}", admin, {"name": "renamed"}),
    ]

    for response in responses:
        assert response.status_code == 200
        text = response.body.decode()
        assert "hash" not in text
        assert_no_secret(text, [admin, created.raw_key, new_key])


def admin_routes() -> list[tuple[str, str]]:
    return sorted(
        (method, path)
        for path, methods in app.routes.items()
        if path.startswith(ADMIN_PREFIX)
        for method in methods
    )


def concrete(path: str) -> str:
    """A path for a route pattern: each parameter gets a plausible value."""
    return (
        path.replace("{key_id}", "1").replace("{symbol}", "AAPL").replace("{", "").replace("}", "")
    )


def test_the_route_table_has_exactly_the_admin_routes_walked_here():
    # The walks below are generated from the route table; this list makes a new admin route
    # fail here until it is added, so every admin route is one someone chose to expose.
    assert admin_routes() == [
        ("DELETE", "/api/v1/admin/api-keys/{key_id}"),
        ("DELETE", "/api/v1/admin/symbols/{symbol}"),
        ("GET", "/api/v1/admin/api-keys"),
        ("GET", "/api/v1/admin/api-keys/{key_id}"),
        ("GET", "/api/v1/admin/api-keys/{key_id}/audit"),
        ("GET", "/api/v1/admin/symbols"),
        ("GET", "/api/v1/admin/symbols/{symbol}"),
        ("POST", "/api/v1/admin/api-keys"),
        ("POST", "/api/v1/admin/api-keys/{key_id}/rotate"),
        ("POST", "/api/v1/admin/symbols"),
        ("POST", "/api/v1/admin/symbols/{symbol}/backfill"),
        ("PUT", "/api/v1/admin/api-keys/{key_id}"),
        ("PUT", "/api/v1/admin/symbols/{symbol}"),
    ]


@pytest.mark.parametrize(("method", "path"), admin_routes())
def test_every_admin_route_is_protected_by_the_key_authorizer(method, path):
    route = app.routes[path][method]

    assert route.authorizer is not None
    assert route.authorizer.name == api_key_authorizer.name


@pytest.mark.parametrize(("method", "path"), admin_routes())
def test_every_admin_route_refuses_a_read_key(client, pinned_db, method, path):
    read_key = make_key(pinned_db, scopes=["read"])

    through_gateway = client.http.request(
        method,
        concrete(path),
        headers={"Authorization": f"Bearer {read_key.raw_key}", "Content-Type": "application/json"},
        body=b"{}",
    )
    # API Gateway with a policy cached from before the key lost `admin`: the middleware.
    with_cached_policy = invoke_api(
        gateway_event(
            read_key.key,
            route=path,
            method=method,
            path_parameters={name: "1" for name in ("key_id", "symbol") if f"{{{name}}}" in path},
        )
    )

    assert through_gateway.status_code == 403
    assert with_cached_policy["statusCode"] == 403
    refused = pinned_db.execute(
        "SELECT reason FROM api_key_audit WHERE key_id = %s AND event = 'request'",
        (read_key.key.id,),
    ).fetchall()
    assert refused == [("scope_not_allowed",)]


def test_nothing_outside_the_admin_prefix_is_an_admin_only_operation():
    # The authorizer grants `read` keys every route outside ADMIN_PREFIX; an admin-only
    # operation must therefore live under it.
    from app import app
    from chalicelib.openapi import declared_operations

    misplaced = [
        key
        for key, operation in declared_operations(app.routes).items()
        if operation.scope == "admin" and not key[1].startswith(ADMIN_PREFIX)
    ]

    assert misplaced == []


def test_a_read_key_reaches_the_read_routes(client, pinned_db):
    read_key = make_key(pinned_db, scopes=["read"])

    response = client.http.get(
        "/api/v1/symbols", headers={"Authorization": f"Bearer {read_key.raw_key}"}
    )

    assert response.status_code == 200
