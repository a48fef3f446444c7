"""Helpers for the API key tests: requests with a key, and reading the audit log."""

from __future__ import annotations

import json
from typing import Any

from chalicelib import db
from chalicelib.keys.models import ApiKey


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def send(
    client: Any, method: str, path: str, raw_key: str, body: Any = None, **headers: str
) -> Any:
    """A request with a key; `body` is JSON-encoded unless it is already bytes or str."""
    all_headers = {**bearer(raw_key), **headers}
    if body is None:
        return client.http.request(method, path, headers=all_headers)
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    all_headers.setdefault("Content-Type", "application/json")
    return client.http.request(
        method, path, headers=all_headers, body=body.encode() if isinstance(body, str) else body
    )


def audit_rows(conn: db.Connection, key_id: int | None = None) -> list[dict[str, Any]]:
    """Audit rows in id order, as dicts."""
    cur = conn.execute(
        "SELECT id, key_id, event, method, route, path, status_code, latency_ms,"
        " host(source_ip) AS source_ip, request_id, key_prefix, reason FROM api_key_audit"
        " WHERE %(key_id)s::bigint IS NULL OR key_id = %(key_id)s ORDER BY id",
        {"key_id": key_id},
    )
    names = [column.name for column in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def key_count(conn: db.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM api_keys").fetchone()
    assert row is not None
    return int(row[0])


def gateway_event(
    key: ApiKey,
    *,
    route: str,
    path_parameters: dict[str, str] | None = None,
    method: str = "GET",
    source_ip: str = "203.0.113.9",
    request_id: str = "req-0001",
    key_prefix: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends the API function for a token whose policy it has cached:
    the authorizer does not run, its earlier context comes along."""
    return {
        "requestContext": {
            "httpMethod": method,
            "resourcePath": route,
            "path": "/api" + route,
            "requestId": request_id,
            "identity": {"sourceIp": source_ip},
            "authorizer": {
                "key_id": str(key.id),
                "key_prefix": key_prefix or key.key_prefix,
                "credential": "current",
                "scopes": ",".join(key.scopes),
                "principalId": str(key.id),
            },
        },
        "headers": {"authorization": "Bearer (cached policy)"},
        "pathParameters": path_parameters,
        "multiValueQueryStringParameters": None,
        "stageVariables": None,
        "body": None,
    }


def invoke_api(event: dict[str, Any]) -> dict[str, Any]:
    """Call the API function the way Lambda does; returns API Gateway's response dict."""
    from chalice.local import LambdaContext

    from app import app

    response: dict[str, Any] = app(event, LambdaContext("api_handler", memory_size=512))
    return response


def clear_of_a_minute_boundary(margin: float = 3.0) -> None:
    """Wait, if need be, until the next UTC minute is more than `margin` seconds away: rows
    counted per minute then all fall in one minute."""
    import time
    from datetime import UTC, datetime

    now = datetime.now(UTC)  # one reading: two could straddle a second
    second = now.second + now.microsecond / 1e6
    if second > 60 - margin:
        time.sleep(60 - second + 0.05)


def refusal_rows(conn: db.Connection) -> list[tuple[Any, ...]]:
    """The aggregated refusal rows: (key_prefix, reason, source_ip, attempts, method, path)."""
    return conn.execute(
        "SELECT key_prefix, reason, host(source_ip), attempts, method, path FROM api_key_audit"
        " WHERE aggregate_minute IS NOT NULL ORDER BY id"
    ).fetchall()
