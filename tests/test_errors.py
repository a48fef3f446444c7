"""describe_error: the one line a job records for any failure, never a secret."""

from __future__ import annotations

import psycopg

from chalicelib.errors import DatabaseUnavailable, describe_error
from chalicelib.polygon import PolygonClient, PolygonNotAuthorized


def test_describe_error_never_shows_a_key():
    exc = RuntimeError("GET /v2/x?apiKey=abc123&limit=5 sent\n  Authorization: Bearer abc123")
    with PolygonClient("http://127.0.0.1:1", "abc123") as client:
        text = describe_error(exc, redact=client.redact)

    assert text == "RuntimeError: GET /v2/x?apiKey=***&limit=5 sent"
    assert describe_error(ValueError("url?api_key=abc123 token=abc123")) == (
        "ValueError: url?api_key=*** token=***"
    )
    assert describe_error(ValueError("sent Authorization: Bearer abc123 ok")) == (
        "ValueError: sent Authorization: Bearer *** ok"
    )


def test_the_caller_s_redaction_masks_a_key_in_any_shape():
    with PolygonClient("http://127.0.0.1:1", "k3y-9f8e") as client:
        text = describe_error(OSError("refused for k3y-9f8e"), redact=client.redact)

    assert text == "OSError: refused for ***"


def test_describe_error_is_one_bounded_line():
    text = describe_error(psycopg.errors.DataError("bad value " + "x" * 1000 + "\nmore"))

    assert text.startswith("database: bad value xxx")
    assert text.endswith("x…")
    assert "\n" not in text
    assert len(text) == 500


def test_each_kind_of_failure_says_where_it_came_from():
    provider = PolygonNotAuthorized("GET /v2/aggs: 403 not included in the plan", path="/v2/aggs")

    assert describe_error(provider) == "provider: GET /v2/aggs: 403 not included in the plan"
    assert describe_error(DatabaseUnavailable()) == "the database is unavailable; retry shortly"
    assert describe_error(KeyError()) == "KeyError: no details"
