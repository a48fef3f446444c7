"""GET /health: public, for load balancers and `make run`; and the API's start-up check of the
schema, which the app runs as middleware."""

from __future__ import annotations

import threading

import msgspec
from chalice import Blueprint, Response

from chalicelib import db
from chalicelib.errors import (
    DATABASE_UNAVAILABLE,
    AppError,
    DatabaseUnavailable,
    ServiceUnavailable,
)
from chalicelib.health import service
from chalicelib.health.service import HealthReport
from chalicelib.http import error_response, json_response
from chalicelib.routing import route

bp = Blueprint(__name__)
_schema_lock = threading.Lock()


def check_health() -> HealthReport:
    """One query: is the database reachable, and at the schema version this code expects?"""
    try:
        return db.read(service.schema_report, one_snapshot=False)
    except AppError as exc:
        return service.unreachable_report(exc)


def ensure_schema_current() -> None:
    """Raise a 503 until the schema is current; one cheap query per container."""
    with _schema_lock:
        if service.schema_known_current():
            return
        service.require_current(check_health())


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
