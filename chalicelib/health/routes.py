"""GET /health: public, for load balancers and `make run`."""

from __future__ import annotations

import msgspec
from chalice import Blueprint, Response

from chalicelib.errors import DATABASE_UNAVAILABLE, DatabaseUnavailable, ServiceUnavailable
from chalicelib.health.service import check_health
from chalicelib.http import error_response, json_response
from chalicelib.routing import route

bp = Blueprint(__name__)


class HealthOut(msgspec.Struct, frozen=True):
    """The database is reachable and at the schema version this code expects."""

    status: str
    database: str
    schema_version: int | None


@route(
    bp,
    "GET",
    "/health",
    summary="Liveness and schema check for load balancers",
    description="503 (with `details.status`, `database`, `schema_version` and "
    "`expected_schema_version`) when the database is unreachable (`database_unavailable`, "
    "with `Retry-After`) or behind the migrations (`service_unavailable`).",
    scope="public",
    tag="Meta",
    response=HealthOut,
)
def health() -> Response:
    report = check_health()
    if report.ok:
        return json_response(
            {"status": "ok", "database": "ok", "schema_version": report.schema_version}
        )
    details = {
        "status": report.status,
        "database": report.database,
        "schema_version": report.schema_version,
        "expected_schema_version": report.expected_schema_version,
    }
    if report.database == "unreachable":
        # `database_unavailable` and nothing about the server: /health is public.
        return error_response(
            DatabaseUnavailable(report.message or DATABASE_UNAVAILABLE, details=details)
        )
    return error_response(ServiceUnavailable(report.message or "", details=details))
