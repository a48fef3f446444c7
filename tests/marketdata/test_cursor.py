"""Cursors round-trip, and refuse anything garbled, forged or borrowed from another query."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chalicelib.errors import BadRequest
from chalicelib.marketdata.cursor import CursorQuery, decode_cursor, encode_cursor

SECRET = b"test-secret"
QUERY = CursorQuery("AAPL", "1m", date(2024, 1, 1), None, True)
AFTER = datetime(2024, 1, 2, 14, 31, 0, 123456, tzinfo=UTC)


def test_round_trip_keeps_the_microsecond() -> None:
    cursor = encode_cursor(QUERY, AFTER, secret=SECRET)

    assert decode_cursor(cursor, QUERY, secret=SECRET) == AFTER


def test_cursor_is_url_safe() -> None:
    cursor = encode_cursor(QUERY, AFTER, secret=SECRET)

    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(
    "garble",
    [
        lambda c: c[:-1],
        lambda c: c.replace(".", ""),
        lambda c: "x" + c,
        lambda c: c + "A",
        lambda c: "é" + c,
        lambda c: "",
        lambda c: "....",
    ],
)
def test_garbled_cursor_is_bad_request(garble: object) -> None:
    cursor = encode_cursor(QUERY, AFTER, secret=SECRET)

    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(garble(cursor), QUERY, secret=SECRET)  # type: ignore[operator]


def test_cursor_signed_with_another_secret_is_refused() -> None:
    forged = encode_cursor(QUERY, AFTER, secret=b"someone-else")

    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(forged, QUERY, secret=SECRET)


def test_cursor_of_another_query_is_refused() -> None:
    cursor = encode_cursor(QUERY, AFTER, secret=SECRET)
    other = CursorQuery("AAPL", "1m", date(2024, 1, 1), None, False)

    with pytest.raises(BadRequest, match="different query"):
        decode_cursor(cursor, other, secret=SECRET)


@pytest.mark.parametrize("after_us", [10**18, -(10**18)])
def test_a_validly_signed_cursor_out_of_the_calendar_is_refused(after_us: int) -> None:
    # Someone who knows the secret (the default one is public) can sign any position; one
    # outside what a datetime can hold is refused like any other bad cursor.
    import hashlib
    import hmac

    import msgspec

    from chalicelib.marketdata import cursor as cursor_module

    payload = msgspec.json.encode(cursor_module._Payload(cursor_module._VERSION, QUERY, after_us))
    signature = hmac.new(SECRET, payload, hashlib.sha256).digest()[: cursor_module._SIGNATURE_BYTES]
    forged = f"{cursor_module._b64(payload)}.{cursor_module._b64(signature)}"

    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(forged, QUERY, secret=SECRET)
