"""The packaged API handler, given API Gateway's REST proxy events with the context the packaged
authorizer returned, as API Gateway passes it (strings)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.factories import daily_times, make_admin_key, make_bars, make_symbol
from tests.package.conftest import STAGE_PREFIX, Container, StartContainer


def proxy_event(
    method: str,
    resource: str,
    path: str,
    *,
    authorizer: dict[str, str] | None = None,
    query: str = "",
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy integration event."""
    params = dict(parse_qsl(query)) or None
    headers = {"Accept": "*/*", "Host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": params,
        "multiValueQueryStringParameters": (
            {name: [value] for name, value in params.items()} if params else None
        ),
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "curl/8.5.0"},
            "authorizer": authorizer,
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def api(start_container: StartContainer, migrated: Any) -> Container:
    return start_container("APIHandler")


@pytest.fixture(scope="module")
def admin_context(start_container: StartContainer, migrated: Any) -> dict[str, str]:
    """What API Gateway hands the API handler for an admin key: the authorizer's context, as
    strings, with the principal id and the authorizer's latency."""
    import psycopg

    with psycopg.connect(migrated.url, autocommit=True) as conn:
        key = make_admin_key(conn, name="package-admin")
    authorizer = start_container("ApiKeyAuthorizer")
    policy = authorizer.result(
        {
            "type": "TOKEN",
            "authorizationToken": f"Bearer {key.raw_key}",
            "methodArn": f"{STAGE_PREFIX}/GET/api/v1/symbols",
        }
    )
    return {
        **{name: str(value) for name, value in policy["context"].items()},
        "principalId": policy["principalId"],
        "integrationLatency": "12",
    }


def answer(api: Container, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.result(event)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def test_health_needs_no_key(api: Container) -> None:
    status, body = answer(api, proxy_event("GET", "/health", "/health"))

    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"


def test_symbols_are_listed(
    api: Container, admin_context: dict[str, str], package_conn: Any
) -> None:
    make_symbol(package_conn, "MSFT", timeframes=["1d"])

    status, body = answer(
        api, proxy_event("GET", "/api/v1/symbols", "/api/v1/symbols", authorizer=admin_context)
    )

    assert status == 200
    assert "MSFT" in [row["symbol"] for row in body["symbols"]]


def test_historical_bars_page_with_a_cursor(
    api: Container, admin_context: dict[str, str], package_conn: Any
) -> None:
    make_symbol(package_conn, "NVDA", timeframes=["1d"])
    times = daily_times(date(2025, 3, 3), 5)
    make_bars(package_conn, "NVDA", times)
    resource = "/api/v1/historical/{symbol}"

    def page(query: str) -> dict[str, Any]:
        status, body = answer(
            api,
            proxy_event(
                "GET",
                resource,
                "/api/v1/historical/NVDA",
                authorizer=admin_context,
                query=query,
                path_parameters={"symbol": "NVDA"},
            ),
        )
        assert status == 200, body
        return body

    first = page("start=2025-03-01&end=2025-03-31&limit=3")
    second = page(f"start=2025-03-01&end=2025-03-31&limit=3&cursor={first['next_cursor']}")

    assert [bar["open"] for bar in first["bars"]] == [100.0, 100.01, 100.02]
    assert [bar["open"] for bar in second["bars"]] == [100.03, 100.04]
    assert second["next_cursor"] is None


def test_an_admin_creates_and_lists_keys(api: Container, admin_context: dict[str, str]) -> None:
    status, created = answer(
        api,
        proxy_event(
            "POST",
            "/api/v1/admin/api-keys",
            "/api/v1/admin/api-keys",
            authorizer=admin_context,
            body={"name": "package-reader", "scopes": ["read"]},
        ),
    )
    status_list, listed = answer(
        api,
        proxy_event(
            "GET", "/api/v1/admin/api-keys", "/api/v1/admin/api-keys", authorizer=admin_context
        ),
    )

    assert status == 201
    assert created["api_key"].startswith("mdw_")
    assert status_list == 200
    names = [key["name"] for key in listed["items"]]
    assert "package-reader" in names
    assert created["api_key"] not in json.dumps(listed)


def test_an_unknown_key_id_is_404_in_the_one_error_body(
    api: Container, admin_context: dict[str, str]
) -> None:
    status, body = answer(
        api,
        proxy_event(
            "GET",
            "/api/v1/admin/api-keys/{key_id}",
            "/api/v1/admin/api-keys/987654",
            authorizer=admin_context,
            path_parameters={"key_id": "987654"},
        ),
    )

    assert status == 404
    assert body["error"]["code"] == "not_found"


def test_a_bad_parameter_is_400_in_the_one_error_body(
    api: Container, admin_context: dict[str, str]
) -> None:
    status, body = answer(
        api,
        proxy_event(
            "GET",
            "/api/v1/historical/{symbol}",
            "/api/v1/historical/AAPL",
            authorizer=admin_context,
            query="limit=lots",
            path_parameters={"symbol": "AAPL"},
        ),
    )

    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert "limit" in body["error"]["message"]


def test_an_http_api_v2_event_gets_the_one_error_body(api: Container) -> None:
    event = {
        "version": "2.0",
        "routeKey": "GET /api/v1/symbols",
        "rawPath": "/api/v1/symbols",
        "rawQueryString": "",
        "headers": {"accept": "*/*"},
        "requestContext": {
            "http": {"method": "GET", "path": "/api/v1/symbols", "sourceIp": "203.0.113.9"},
            "requestId": "v2-request",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }

    status, body = answer(api, event)

    assert status == 400
    assert body["error"]["code"] == "bad_request"


def test_an_event_without_a_known_route_gets_the_one_error_body(api: Container) -> None:
    status, body = answer(api, proxy_event("GET", "/no/such/route", "/no/such/route"))

    assert status == 404
    assert body["error"]["code"] == "not_found"
