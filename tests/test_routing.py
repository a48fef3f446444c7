"""One declaration per route: routing, the OpenAPI operation, input parsing and the one error
body, all from `routing.route`."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import pytest
from chalice import Blueprint, Chalice, Response
from chalice.test import Client

from chalicelib import errors
from chalicelib.http import json_response
from chalicelib.keys.authorizer import api_key_authorizer
from chalicelib.openapi import build_document, declared_operations, undeclared_routes
from chalicelib.routing import route


class Thing(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int = 1


class Page(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = 10


def make_app() -> tuple[Chalice, list[Any]]:
    """A throwaway app whose views record what they were called with."""
    bp = Blueprint(__name__)
    calls: list[Any] = []

    @route(bp, "GET", "/things", summary="List", scope="public", tag="t", query=Page)
    def list_things(*, query: Page) -> Response:
        calls.append(query)
        return json_response({"limit": query.limit})

    @route(bp, "POST", "/things", summary="Add", scope="public", tag="t", body=Thing, status=201)
    def add_thing(*, body: Thing) -> Response:
        calls.append(body)
        return json_response({"name": body.name, "size": body.size}, status=201)

    @route(bp, "GET", "/missing", summary="Not found", scope="public", tag="t")
    def missing() -> Response:
        raise errors.NotFound("no such thing")

    @route(bp, "GET", "/broken", summary="Broken", scope="public", tag="t")
    def broken() -> Response:
        raise RuntimeError("password=hunter2 in a stack trace")

    @route(bp, "GET", "/private", summary="Private", scope="read", tag="t")
    def private() -> Response:
        return json_response({})

    app = Chalice(app_name="routing-test")
    app.register_blueprint(bp)
    return app, calls


def body(response: Any) -> Any:
    return json.loads(response.body)


def test_the_query_is_parsed_into_the_declared_model_before_the_view():
    app, calls = make_app()
    with Client(app) as client:
        ok = client.http.get("/things?limit=3")
        bad = client.http.get("/things?limit=many")

    assert ok.status_code == 200
    assert calls == [Page(limit=3)]
    assert bad.status_code == 400
    assert body(bad)["error"]["code"] == "bad_request"
    assert "limit" in body(bad)["error"]["message"]


def test_the_body_is_parsed_into_the_declared_model_and_required():
    app, calls = make_app()
    headers = {"Content-Type": "application/json"}
    with Client(app) as client:
        ok = client.http.post("/things", headers=headers, body=b'{"name": "a"}')
        unknown_field = client.http.post("/things", headers=headers, body=b'{"nme": "a"}')
        absent = client.http.post("/things", headers=headers)

    assert (ok.status_code, body(ok)) == (201, {"name": "a", "size": 1})
    assert calls == [Thing(name="a")]
    assert unknown_field.status_code == 400
    assert absent.status_code == 400
    assert body(absent)["error"]["message"] == "request body is required and must be a JSON object"


def test_an_optional_body_that_is_absent_gives_the_models_defaults():
    class Options(msgspec.Struct):
        grace_seconds: int = 0

    bp = Blueprint(__name__)
    seen: list[Any] = []

    @route(
        bp, "POST", "/x", summary="x", scope="public", tag="t", body=Options, body_required=False
    )
    def view(*, body: Options) -> Response:
        seen.append(body)
        return json_response({})

    app = Chalice(app_name="routing-test")
    app.register_blueprint(bp)
    with Client(app) as client:
        response = client.http.post("/x")

    assert response.status_code == 200
    assert seen == [Options(grace_seconds=0)]
    assert build_document(app.routes)["paths"]["/x"]["post"]["requestBody"]["required"] is False


def test_an_optional_body_without_defaults_is_refused_when_declared():
    bp = Blueprint(__name__)

    with pytest.raises(TypeError, match="POST /x: an optional body needs defaults"):

        @route(
            bp, "POST", "/x", summary="x", scope="public", tag="t", body=Thing, body_required=False
        )
        def view(*, body: Thing) -> Response:
            return json_response({})


def test_app_errors_render_as_the_one_body():
    app, _ = make_app()
    with Client(app) as client:
        response = client.http.get("/missing")

    assert response.status_code == 404
    assert body(response) == {"error": {"code": "not_found", "message": "no such thing"}}


def test_unexpected_errors_are_logged_and_never_reach_the_client(caplog):
    app, _ = make_app()
    with caplog.at_level(logging.ERROR), Client(app) as client:
        response = client.http.get("/broken")

    assert response.status_code == 500
    assert body(response) == {
        "error": {
            "code": "internal_error",
            "message": "internal error; the request was not completed",
        }
    }
    assert b"hunter2" not in response.body
    assert "RuntimeError: password=hunter2" in caplog.text
    assert "GET /broken" in caplog.text


def test_the_scope_decides_the_authorizer():
    app, _ = make_app()

    assert app.routes["/things"]["GET"].authorizer is None
    assert app.routes["/private"]["GET"].authorizer is not None
    assert app.routes["/private"]["GET"].authorizer.name == api_key_authorizer.name


def test_the_operation_is_read_from_the_route_itself():
    app, _ = make_app()

    operations = declared_operations(app.routes)
    document = build_document(app.routes)

    assert sorted(operations) == [
        ("GET", "/broken"),
        ("GET", "/missing"),
        ("GET", "/private"),
        ("GET", "/things"),
        ("POST", "/things"),
    ]
    assert operations[("POST", "/things")].body is Thing
    assert document["paths"]["/things"]["post"]["requestBody"]["required"] is True
    assert list(document["paths"]["/things"]["post"]["responses"])[0] == "201"


def test_a_route_declared_without_the_helper_is_reported():
    app, _ = make_app()

    @app.route("/plain", methods=["GET"])
    def plain() -> dict[str, str]:
        return {}

    assert undeclared_routes(app.routes) == [("GET", "/plain")]
    assert "/plain" not in build_document(app.routes)["paths"]


def test_declaring_one_route_twice_is_refused():
    bp = Blueprint(__name__)

    @route(bp, "GET", "/twice", summary="one", scope="public", tag="t")
    def one() -> Response:
        return json_response({})

    @route(bp, "GET", "/twice", summary="two", scope="public", tag="t")
    def two() -> Response:
        return json_response({})

    app = Chalice(app_name="routing-test")
    with pytest.raises(ValueError, match="Duplicate method"):
        app.register_blueprint(bp)
