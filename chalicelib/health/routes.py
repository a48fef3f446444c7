"""GET /health: public, for load balancers and `make run`."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.health.service import check_health
from chalicelib.http import json_response, json_view

bp = Blueprint(__name__)


@bp.route("/health", methods=["GET"])
@json_view
def health() -> Response:
    report = check_health()
    if report.ok:
        return json_response(
            {"status": "ok", "database": "ok", "schema_version": report.schema_version}
        )
    return json_response(
        {
            "error": {
                "code": "service_unavailable",
                "message": report.message,
                "details": {
                    "status": report.status,
                    "database": report.database,
                    "schema_version": report.schema_version,
                    "expected_schema_version": report.expected_schema_version,
                },
            }
        },
        status=503,
    )
