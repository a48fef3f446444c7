"""The OpenAPI 3.1 document, built from the operations the routes carry.

Every view is declared with `chalicelib.routing.route(...)`, which records its `Operation`
(method, path, summary, scope, and the msgspec models that parse its query and body and shape
its response) on the view itself. The same models validate requests, so the document cannot
drift from what the code accepts. `build_document` reads the operations of the routes an app
serves; a test walks `app.routes` and fails for any route without one.

Importing this module is cheap: schemas are generated only when the document is built.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from chalicelib import container

Scope = Literal["public", "read", "admin"]

API_TITLE = "mdw: Market Data Warehouse API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Validated OHLCV bars for US stocks, ETFs and crypto, backfilled from Polygon.io. "
    "Authenticate with `Authorization: Bearer <key>`; `read` keys reach market data, the "
    "symbol list, the status and the Polygon-compatible routes, `admin` keys reach everything. "
    'Every error has the body `{"error": {"code", "message", "details"?}}`, except on the '
    "Polygon-compatible routes (`/v2/aggs/…`, `/v3/reference/…`), which answer in Polygon's "
    '`{"status": "ERROR", "request_id", "error"}`.'
)

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON, an invalid parameter or an invalid cursor.",
    401: "Missing, malformed, unknown or revoked API key.",
    403: "The key's scopes do not reach this route, or its IP allow-list refuses the caller.",
    404: "No such resource.",
    409: "The resource already exists.",
    406: "The `Accept` header names no media type the route serves (JSON, or CSV where offered).",
    413: "The request body is too large.",
    422: "Well-formed but refused (for example a ticker the provider does not know).",
    429: "Rate limit exceeded; retry after the `Retry-After` header's seconds.",
    503: "The database or the data provider is unavailable, or the schema is being migrated.",
}

_PATH_PARAMETER = re.compile(r"{([^}]+)}")


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong: a stable machine-readable `code` and a message for people."""

    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    """The one error body every route answers with."""

    error: ErrorDetail


class Operation(msgspec.Struct, frozen=True):
    """One route as the API document describes it.

    `query`, `body` and `response` are msgspec types (usually Structs), or for `response` a
    ready JSON schema dict. `errors` lists the statuses the route itself can answer with;
    401/403/429 are added for protected routes and 503 for every route that uses the database.
    """

    method: str
    path: str
    summary: str
    scope: Scope
    tag: str
    description: str = ""
    query: Any = None
    body: Any = None
    body_required: bool = True
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    path_parameters: Mapping[str, str] = msgspec.field(default_factory=dict)
    uses_database: bool = True
    # The body of this route's errors, when it is not the one error body (the
    # Polygon-compatible routes answer in Polygon's).
    error_body: Any = None
    # False for a route that is served but is not part of the API (the HTML pages and their
    # files): declared like the others, left out of the document.
    listed: bool = True
    # CSV beside JSON: the success answer may be `text/csv` (with a `Link` header to the next
    # page), chosen by `format=csv` or the `Accept` header.
    serves_csv: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.method.upper(), self.path)


# Where `routing.route` keeps a view's operation: on the view function Chalice routes to.
OPERATION_ATTRIBUTE = "mdw_operation"


def operation_of(view: Any) -> Operation | None:
    """The operation a view was declared with, or None for a view declared another way."""
    op = getattr(view, "__dict__", {}).get(OPERATION_ATTRIBUTE)
    return op if isinstance(op, Operation) else None


def declared_operations(
    routes: Mapping[str, Mapping[str, Any]],
) -> dict[tuple[str, str], Operation]:
    """(METHOD, path) → operation, for every route of a Chalice app's `app.routes` that
    was declared through `routing.route`."""
    found: dict[tuple[str, str], Operation] = {}
    for path, methods in routes.items():
        for method, entry in methods.items():
            op = operation_of(entry.view_function)
            if op is not None and op.key == (method.upper(), path):
                found[op.key] = op
    return found


def served_routes(routes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(METHOD, path) for every route in a Chalice app's `app.routes`."""
    return sorted((method.upper(), path) for path, methods in routes.items() for method in methods)


def undeclared_routes(routes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Routes the app serves that were not declared through `routing.route`: each one a gap in
    the document and a route whose errors may escape the one error body."""
    declared = declared_operations(routes)
    return [key for key in served_routes(routes) if key not in declared]


def unlisted_routes(routes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Routes declared as served but not part of the API document (`listed=False`)."""
    return sorted(key for key, op in declared_operations(routes).items() if not op.listed)


def build_document(
    routes: Mapping[str, Mapping[str, Any]], *, server_url: str | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes an app serves, in path order."""
    declared = declared_operations(routes)
    operations = [
        declared[key] for key in served_routes(routes) if key in declared and declared[key].listed
    ]
    schema_types, index = _collect_types(operations)
    refs, components = msgspec.json.schema_components(
        schema_types, ref_template="#/components/schemas/{name}"
    )
    resolved = dict(zip(index, refs, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for number, op in enumerate(operations):
        schemas = {role: ref for (n, role), ref in resolved.items() if n == number}
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_object(
            op, schemas, components
        )
    # A query model becomes parameters; its schema stays only if something else refers to it.
    for name in {resolved[key]["$ref"].rsplit("/", 1)[-1] for key in resolved if key[1] == "query"}:
        others = {k: v for k, v in components.items() if k != name}
        if f'/{name}"' not in msgspec.json.encode([paths, others]).decode():
            del components[name]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": API_TITLE, "version": API_VERSION, "description": API_DESCRIPTION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "mdw_<base62><checksum>",
                    "description": "An API key from `POST /api/v1/admin/api-keys` or "
                    "`mdw keys create`.",
                }
            },
        },
        "tags": [{"name": tag} for tag in sorted({op.tag for op in operations})],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def _collect_types(operations: Iterable[Operation]) -> tuple[list[Any], list[tuple[int, str]]]:
    """Every msgspec type the operations mention, with (operation number, role) keys."""
    types: list[Any] = [ErrorBody]
    index: list[tuple[int, str]] = [(-1, "error")]
    for number, op in enumerate(operations):
        for role in ("query", "body", "response", "error_body"):
            value = getattr(op, role)
            if value is not None and not isinstance(value, dict):
                types.append(value)
                index.append((number, role))
    return types, index


def _operation_object(
    op: Operation, schemas: dict[str, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "x-scope": op.scope,
    }
    description = op.description
    if op.scope != "public":
        description = f"{description}\n\nScope: `{op.scope}`.".strip()
        result["security"] = [{"apiKey": []}]
    else:
        result["security"] = []
    if description:
        result["description"] = description

    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": op.path_parameters.get(name, ""),
            "schema": {"type": "string"},
        }
        for name in _PATH_PARAMETER.findall(op.path)
    ]
    if "query" in schemas:
        parameters.extend(_query_parameters(schemas["query"], components))
    if parameters:
        result["parameters"] = parameters
    if "body" in schemas:
        result["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schemas["body"]}},
        }

    response_schema = schemas.get(
        "response", op.response if isinstance(op.response, dict) else None
    )
    success: dict[str, Any] = {"description": "Success."}
    if response_schema is not None:
        success["content"] = {"application/json": {"schema": response_schema}}
    if op.serves_csv:
        success.setdefault("content", {})["text/csv"] = {
            "schema": {
                "type": "string",
                "description": "A header row, then one row per bar (RFC 4180 quoting).",
            }
        }
        success["headers"] = {
            "Link": {
                "description": 'CSV only: `<?…&cursor=…>; rel="next"` while another page '
                "exists (a query-only reference: resolve it against the request URL).",
                "schema": {"type": "string"},
            }
        }
    responses: dict[str, Any] = {str(op.status): success}
    error_schema = schemas.get("error_body", schemas_ref("ErrorBody"))
    for status in _error_statuses(op):
        error: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS.get(status, "Error."),
            "content": {"application/json": {"schema": error_schema}},
        }
        if status == 429:
            error["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            }
        responses[str(status)] = error
    result["responses"] = responses
    return result


def schemas_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation_id(op: Operation) -> str:
    words = [
        part.strip("{}").replace("-", "_").replace(".", "_")
        for part in op.path.split("/")
        if part and part not in ("api", "v1")
    ]
    return "_".join([op.method.lower(), *words])


def _error_statuses(op: Operation) -> list[int]:
    statuses = set(op.errors)
    if op.scope != "public":
        # The request middleware applies every key's IP allow-list and rate limit.
        statuses.update((401, 403, 429))
    if op.uses_database:
        statuses.add(503)
    return sorted(statuses)


def _query_parameters(
    reference: dict[str, Any], components: dict[str, Any]
) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters (the model itself is never a body)."""
    name = reference["$ref"].rsplit("/", 1)[-1]
    model = components[name]
    required = set(model.get("required", ()))
    parameters = []
    for field_name, schema in model.get("properties", {}).items():
        schema = dict(schema)
        description = schema.pop("description", "")
        parameter: dict[str, Any] = {
            "name": field_name,
            "in": "query",
            "required": field_name in required,
            "schema": schema,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


_document_lock = threading.Lock()


def document_json(routes: Mapping[str, Mapping[str, Any]]) -> str:
    """The document as JSON text, built once per container (the routes cannot change)."""
    state = container.current
    with _document_lock:
        body = state.openapi_document
        if body is None:
            body = state.openapi_document = msgspec.json.encode(build_document(routes)).decode()
        return body
