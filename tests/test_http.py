"""The one error body, pinned: every error the app renders has this shape."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec
import pytest

from chalicelib import errors
from chalicelib.errors import NotAcceptable
from chalicelib.http import (
    MAX_BODY_BYTES,
    error_response,
    negotiate,
    parse_body,
    parse_id,
    parse_query,
    restate_framework_error,
)


class NewThing(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int = 1


class ListQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = 10
    active_only: bool = False


def body(response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("error_class", "status", "code"),
    [
        (errors.BadRequest, 400, "bad_request"),
        (errors.Unauthorized, 401, "unauthorized"),
        (errors.Forbidden, 403, "forbidden"),
        (errors.NotFound, 404, "not_found"),
        (errors.Conflict, 409, "conflict"),
        (errors.PayloadTooLarge, 413, "payload_too_large"),
        (errors.Unprocessable, 422, "unprocessable"),
        (errors.ServiceUnavailable, 503, "service_unavailable"),
        (errors.DatabaseUnavailable, 503, "database_unavailable"),
    ],
)
def test_each_error_renders_its_status_and_the_one_body(error_class, status, code):
    response = error_response(error_class("what went wrong"))

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert body(response) == {"error": {"code": code, "message": "what went wrong"}}


def test_details_are_included_when_present():
    response = error_response(errors.BadRequest("bad", details={"field": "name"}))

    assert body(response) == {
        "error": {"code": "bad_request", "message": "bad", "details": {"field": "name"}}
    }


def test_rate_limited_carries_retry_after():
    response = error_response(errors.RateLimited("slow down", retry_after=17))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "17"
    assert body(response)["error"]["code"] == "rate_limited"


def test_database_unavailable_asks_for_a_retry_and_names_no_server():
    response = error_response(errors.DatabaseUnavailable())

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert body(response) == {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable; retry shortly",
        }
    }


def test_other_errors_carry_no_retry_after():
    assert "Retry-After" not in error_response(errors.ServiceUnavailable("down")).headers
    assert "Retry-After" not in error_response(errors.BadRequest("bad")).headers


def test_parse_body_returns_the_model():
    assert parse_body(b'{"name": "x", "size": 3}', NewThing) == NewThing(name="x", size=3)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "request body is required and must be a JSON object"),
        (b"", "request body is required and must be a JSON object"),
        (b"{not json", "request body is not valid JSON (UTF-8)"),
        (b'{"name": "x\xff"}', "request body is not valid JSON (UTF-8)"),
        (b'{"name": "a\\u0000b"}', "request body strings must not contain NUL (\\u0000)"),
        (b'{"name": "x", "size": "3"}', "Expected `int`, got `str` - at `$.size`"),
        (b'{"name": "x", "colour": "red"}', "Object contains unknown field `colour`"),
        (b'{"size": 3}', "Object missing required field `name`"),
        (b"[1, 2]", "Expected `object`, got `array`"),
    ],
)
def test_parse_body_rejects_bad_input(raw, message):
    with pytest.raises(errors.BadRequest) as caught:
        parse_body(raw, NewThing)

    assert caught.value.message == message


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    assert parse_body(b'{"name": "a\\\\u0000"}', NewThing) == NewThing(name="a\\u0000")


def test_parse_query_rejects_nul():
    with pytest.raises(errors.BadRequest, match="must not contain NUL"):
        parse_query({"limit": "1\x00"}, ListQuery)


def test_parse_body_rejects_huge_bodies():
    with pytest.raises(errors.PayloadTooLarge):
        parse_body(b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}', NewThing)


def test_parse_query_converts_strings():
    assert parse_query({"limit": "5", "active_only": "true"}, ListQuery) == ListQuery(5, True)
    assert parse_query(None, ListQuery) == ListQuery()


def test_parse_query_names_the_bad_parameter():
    with pytest.raises(errors.BadRequest) as caught:
        parse_query({"limit": "many"}, ListQuery)

    assert caught.value.message == "invalid query parameter: Expected `int`, got `str` - at `limit`"


Colour = Literal["red", "green", "blue"]


class Paint(msgspec.Struct, forbid_unknown_fields=True):
    colour: Annotated[Colour, msgspec.Meta(description="Declared order, not sorted.")] = "red"
    trims: list[Colour] = msgspec.field(default_factory=list)
    finish: Literal["matte", "gloss"] | None = None
    base: Colour | msgspec.UnsetType = msgspec.UNSET
    inner: Paint | None = None


@pytest.mark.parametrize(
    ("body", "field", "allowed", "got"),
    [
        ({"colour": "pink"}, "colour", ["red", "green", "blue"], "'pink'"),
        ({"trims": ["red", "pink"]}, "trims[1]", ["red", "green", "blue"], "'pink'"),
        ({"finish": "satin"}, "finish", ["matte", "gloss"], "'satin'"),
        ({"base": "pink"}, "base", ["red", "green", "blue"], "'pink'"),
        ({"inner": {"trims": ["pink"]}}, "inner.trims[0]", ["red", "green", "blue"], "'pink'"),
    ],
)
def test_an_invalid_choice_lists_the_allowed_values(body, field, allowed, got):
    with pytest.raises(errors.BadRequest) as caught:
        parse_body(json.dumps(body).encode(), Paint)

    assert caught.value.message == f"{field} must be one of {', '.join(allowed)}; got {got}"
    assert caught.value.details == {"field": field, "allowed": allowed}


def test_an_invalid_choice_in_a_query_names_the_parameter():
    with pytest.raises(errors.BadRequest) as caught:
        parse_query({"colour": "pink"}, Paint)

    assert caught.value.message == (
        "invalid query parameter: colour must be one of red, green, blue; got 'pink'"
    )


def test_other_validation_errors_keep_msgspec_words():
    with pytest.raises(errors.BadRequest) as caught:
        parse_body(b'{"colour": 5}', Paint)

    assert caught.value.message == "Expected `str`, got `int` - at `$.colour`"
    assert caught.value.details is None


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "１２", "1" * 19, "1 OR 1=1"])
def test_parse_id_rejects_non_positive_integers(raw):
    with pytest.raises(errors.BadRequest, match="id must be a positive integer"):
        parse_id(raw)


def test_parse_id_accepts_positive_integers():
    assert parse_id("42") == 42


def test_framework_errors_are_restated_in_the_one_body():
    from chalice import Response

    response = restate_framework_error(
        Response(
            body={"Code": "MethodNotAllowedError", "Message": "Unsupported method: PATCH"},
            status_code=405,
            headers={"Allow": "GET, POST"},
        )
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert body(response) == {
        "error": {"code": "method_not_allowed", "message": "Unsupported method: PATCH"}
    }


def test_other_responses_pass_through_unchanged():
    from chalice import Response

    ours = error_response(errors.NotFound("gone"))
    plain = Response(body={"Code": "x", "Message": "y", "extra": 1}, status_code=400)

    assert restate_framework_error(ours) is ours
    assert restate_framework_error(plain) is plain


def test_a_body_that_is_not_declared_json_gets_the_one_error_body(client, pinned_db):
    from tests.factories import make_admin_key

    admin = make_admin_key(pinned_db)
    response = client.http.post(
        "/api/v1/admin/api-keys",
        headers={
            "Authorization": f"Bearer {admin.raw_key}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=b"name=x",
    )

    assert response.status_code == 415
    assert response.json_body == {
        "error": {
            "code": "unsupported_media_type",
            "message": "Unsupported media type: application/x-www-form-urlencoded",
        }
    }


# --- negotiate -----------------------------------------------------------------------------------

OFFERS = ("application/json", "text/csv")


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("   ", "application/json"),
        ("text/csv", "text/csv"),
        ("TEXT/CSV; charset=utf-8", "text/csv"),
        ("text/*", "text/csv"),
        ("*/*", "application/json"),
        ("text/csv, application/json", "application/json"),  # equal weights: the first offer
        ("application/json;q=0.4, text/csv;q=0.5", "text/csv"),
        ("text/*;q=0.9, text/csv;q=0.1, application/json;q=0.5", "application/json"),
        ("text/csv;q=0, */*;q=0.1", "application/json"),
        ("application/xml, text/csv;q=0.2", "text/csv"),
    ],
)
def test_negotiate_picks_the_most_wanted_offer(accept: str | None, chosen: str) -> None:
    assert negotiate(accept, OFFERS) == chosen


@pytest.mark.parametrize(
    "accept",
    ["application/xml", "image/*", "text/csv;q=0, application/json;q=0", "*/*;q=0", "text/csv;q=x"],
)
def test_negotiate_refuses_an_accept_that_names_no_offer(accept: str) -> None:
    with pytest.raises(NotAcceptable) as raised:
        negotiate(accept, OFFERS)

    assert raised.value.status == 406
    assert raised.value.details == {"accept": accept, "available": list(OFFERS)}
