from __future__ import annotations

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


def test_health_is_503_database_unavailable_naming_nothing_of_the_server_when_unreachable(
    client, caplog
):
    db.set_database(
        db.Database("postgresql://mdw-user:s3cret-pw@127.0.0.1:1/warehouse", connect_timeout=2)
    )

    response = client.http.get("/health")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json_body == {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable; retry shortly",
            "details": {
                "status": "unavailable",
                "database": "unreachable",
                "schema_version": None,
                "expected_schema_version": latest_version(),
            },
        }
    }
    # The operator finds the server in the log, without the password.
    assert 'cannot connect to database "warehouse" on 127.0.0.1:1: ' in caplog.text
    assert "s3cret-pw" not in caplog.text
