"""GET /openapi.json: this API's OpenAPI document, public, built once per container."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.http import JSON_HEADERS
from chalicelib.openapi import document_json
from chalicelib.routing import route

bp = Blueprint(__name__)
DOCUMENT_PATH = "/openapi.json"


@route(
    bp,
    "GET",
    DOCUMENT_PATH,
    summary="This API's OpenAPI 3.1 document",
    description="Generated from the models that validate requests; public.",
    scope="public",
    tag="Meta",
    response={"type": "object", "description": "An OpenAPI 3.1 document."},
    uses_database=False,
)
def openapi_document() -> Response:
    return Response(
        body=document_json(bp.current_app.routes), status_code=200, headers=dict(JSON_HEADERS)
    )
