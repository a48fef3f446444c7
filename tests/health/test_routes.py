from __future__ import annotations

import json

from chalicelib import db
from chalicelib.migrations import discover_migrations
from chalicelib.schema import latest_version


def test_health_reports_ok_and_schema_version(client):
    response = client.http.get("/health")

    assert response.status_code == 200
    assert response.json_body == {
        "status": "ok",
        "database": "ok",
        "schema_version": latest_version(),
    }


def test_health_is_503_when_schema_is_behind(client, pinned_db):
    pinned_db.execute("DELETE FROM schema_migrations WHERE version = %s", (latest_version(),))

    response = client.http.get("/health")

    assert response.status_code == 503
    error = response.json_body["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"]["database"] == "behind"
    assert error["details"]["schema_version"] == discover_migrations()[-2].version
    assert error["details"]["expected_schema_version"] == latest_version()
    assert "run the migrate function" in error["message"]


def test_health_is_503_naming_host_and_database_when_unreachable(client):
    db.set_database(
        db.Database("postgresql://mdw:s3cret-pw@127.0.0.1:1/warehouse", connect_timeout=2)
    )

    response = client.http.get("/health")

    assert response.status_code == 503
    body = json.dumps(response.json_body)
    assert response.json_body["error"]["details"]["database"] == "unreachable"
    assert 'database "warehouse" on 127.0.0.1:1' in response.json_body["error"]["message"]
    assert "s3cret-pw" not in body
