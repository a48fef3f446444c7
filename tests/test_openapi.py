"""The OpenAPI document: every served route declared, valid schemas, answers that match them."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app import app
from chalicelib import db
from chalicelib.openapi import build_document, undeclared_routes, unlisted_routes
from tests.factories import daily_times, make_admin_key, make_bars, make_symbol


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(app.routes)


def test_every_served_route_is_declared() -> None:
    missing = undeclared_routes(app.routes)

    assert missing == [], (
        "routes not declared through chalicelib.routing.route (no operation in the document, "
        f"no error mapping): {missing}"
    )


def test_document_covers_exactly_the_served_routes(document: dict[str, Any]) -> None:
    # Less the pages for people (/docs, /console and their files), which are not operations.
    served = {(m.upper(), p) for p, methods in app.routes.items() for m in methods}
    served -= set(unlisted_routes(app.routes))
    documented = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}

    assert documented == served


def test_document_is_openapi_3_1_with_valid_json_schemas(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = str(document)
    names = set(document["components"]["schemas"])
    refs = {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}

    assert refs <= names


def test_protected_routes_require_the_key_and_name_their_scope(document: dict[str, Any]) -> None:
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if path in ("/health", "/openapi.json"):
                assert op["security"] == [], (method, path)
                assert "401" not in op["responses"]
            else:
                assert op["security"] == [{"apiKey": []}], (method, path)
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
                expected = "admin" if path.startswith("/api/v1/admin/") else "read"
                assert op["x-scope"] == expected, (method, path)


def test_query_models_become_parameters(document: dict[str, Any]) -> None:
    op = document["paths"]["/api/v1/historical/{symbol}"]["get"]
    parameters = {p["name"]: p for p in op["parameters"]}

    assert list(parameters) == [
        "symbol",
        "timeframe",
        "start",
        "end",
        "validated_only",
        "adjusted",
        "sort",
        "limit",
        "cursor",
        "format",
    ]
    assert parameters["symbol"]["in"] == "path"
    assert parameters["limit"]["schema"]["minimum"] == 1
    assert parameters["timeframe"]["schema"]["default"] == "1d"
    assert parameters["sort"]["schema"]["enum"] == ["asc", "desc"]
    assert "HistoricalQuery" not in document["components"]["schemas"]


def test_openapi_json_is_public_and_matches_the_built_document(
    client: Any, document: dict[str, Any]
) -> None:
    response = client.http.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json_body == document


def _validator(document: dict[str, Any], path: str, method: str, status: str) -> Any:
    """A validator for one documented response body, resolving the document's $refs."""
    schema = document["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openapi", resource)
    wrapped = {"$ref": "urn:openapi#" + schema["$ref"].removeprefix("#")}
    return Draft202012Validator(wrapped, registry=registry)


def test_real_answers_match_their_documented_schemas(
    client: Any, pinned_db: db.Connection, document: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {make_admin_key(pinned_db).raw_key}"}
    make_symbol(pinned_db, "AAPL", timeframes=["1d", "1h"])
    make_bars(pinned_db, "AAPL", daily_times(date(2024, 1, 2), 3), validated=[True, False, True])

    checks = [
        ("/api/v1/historical/{symbol}", "/api/v1/historical/AAPL?validated_only=false&limit=2"),
        ("/api/v1/symbols", "/api/v1/symbols"),
        ("/api/v1/status", "/api/v1/status"),
        ("/api/v1/admin/symbols", "/api/v1/admin/symbols"),
        ("/api/v1/admin/symbols/{symbol}", "/api/v1/admin/symbols/AAPL"),
        ("/api/v1/admin/api-keys", "/api/v1/admin/api-keys"),
    ]
    for template, url in checks:
        response = client.http.get(url, headers=headers)
        assert response.status_code == 200, url
        _validator(document, template, "get", "200").validate(response.json_body)

    missing = client.http.get("/api/v1/historical/NOPE", headers=headers)
    assert missing.status_code == 404
    _validator(document, "/api/v1/historical/{symbol}", "get", "404").validate(missing.json_body)
