"""Where a route is declared: `route(bp, method, path, ...)` on the view, once.

One declaration gives Chalice the route (with the API key authorizer unless the scope is
`public`), gives the OpenAPI document its operation (`chalicelib/openapi.py` reads it from the
view), parses the declared query and body models into the view's `query=` and `body=`
arguments, and renders any error the view raises as the one error body. Method, path, scope and
models are written once, so the document cannot drift from what the route accepts, and no
route can forget the error mapping. A test walks `app.routes` and fails for any route declared
another way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from chalice import Blueprint

from chalicelib.errors import AppError
from chalicelib.http import error_response, internal_error_response, parse_body, parse_query
from chalicelib.keys.authorizer import api_key_authorizer
from chalicelib.openapi import OPERATION_ATTRIBUTE, Operation, Scope

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def route(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    scope: Scope,
    tag: str,
    description: str = "",
    query: Any = None,
    body: Any = None,
    body_required: bool = True,
    response: Any = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    path_parameters: Mapping[str, str] | None = None,
    uses_database: bool = True,
    error_body: Any = None,
    listed: bool = True,
    serves_csv: bool = False,
) -> Callable[[F], F]:
    """Declare the decorated view as `method path`.

    `query` and `body` are msgspec models: the request's query string and JSON body are parsed
    into them (a bad one is a 400 before the view runs) and passed as `query=` and `body=`. A
    body that is not `body_required` may be absent; the view then gets the model's defaults.
    `response`, `status` and `errors` describe the answers for the document; `error_body` is
    the model of the error answers when the route's errors are not in the one error body.
    `listed=False` serves a route that is not part of the API (a page): it stays out of the
    document. `serves_csv` says the view can also answer `text/csv`.
    """
    op = Operation(
        method=method.upper(),
        path=path,
        summary=summary,
        scope=scope,
        tag=tag,
        description=description,
        query=query,
        body=body,
        body_required=body_required,
        response=response,
        status=status,
        errors=errors,
        path_parameters=dict(path_parameters or {}),
        uses_database=uses_database,
        error_body=error_body,
        listed=listed,
        serves_csv=serves_csv,
    )

    if body is not None and not body_required:
        # An absent optional body means the model's defaults: a model without them is a
        # mistake in the declaration, refused when the module loads rather than on a request.
        try:
            body()
        except TypeError as exc:
            raise TypeError(f"{method} {path}: an optional body needs defaults: {exc}") from None

    def declare(view: F) -> F:
        @functools.wraps(view)
        def answer(**path_values: str) -> Any:
            try:
                return view(**path_values, **_parsed_inputs(bp, op))
            except AppError as exc:
                return error_response(exc)
            except Exception:
                # Logged with its traceback; the client sees the one body, never the trace.
                log.exception("unhandled error in %s %s", op.method, op.path)
                return internal_error_response()

        answer.__dict__[OPERATION_ATTRIBUTE] = op
        authorizer = None if scope == "public" else api_key_authorizer
        bp.route(path, methods=[op.method], authorizer=authorizer)(answer)
        return view

    return declare


def _parsed_inputs(bp: Blueprint, op: Operation) -> dict[str, Any]:
    if op.query is None and op.body is None:
        return {}
    request = bp.current_request
    inputs: dict[str, Any] = {}
    if op.query is not None:
        inputs["query"] = parse_query(request.query_params, op.query)
    if op.body is not None:
        raw = request.raw_body
        if not raw and not op.body_required:
            inputs["body"] = op.body()
        else:
            inputs["body"] = parse_body(raw.encode() if isinstance(raw, str) else raw, op.body)
    return inputs
