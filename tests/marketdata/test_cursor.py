"""Cursors round-trip, and refuse anything garbled, forged or borrowed from another query."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import msgspec
import pytest

from chalicelib.errors import BadRequest
from chalicelib.marketdata.cursor import CursorQuery, Position, decode_cursor, encode_cursor

SECRET = b"test-secret"
QUERY = CursorQuery("AAPL", "1m", "2024-01-01", None, True)
AFTER = Position("AAPL", datetime(2024, 1, 2, 14, 31, 0, 123456, tzinfo=UTC))


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
    other = CursorQuery("AAPL", "1m", "2024-01-01", None, False)

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

    payload = msgspec.json.encode(
        cursor_module._Payload(cursor_module._VERSION, QUERY, "AAPL", after_us)
    )
    signature = hmac.new(SECRET, payload, hashlib.sha256).digest()[: cursor_module._SIGNATURE_BYTES]
    forged = f"{cursor_module._b64(payload)}.{cursor_module._b64(signature)}"

    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(forged, QUERY, secret=SECRET)


# A cursor a client holds must keep working across releases: its exact bytes are pinned, for
# the version written today and for the version 1 cursors issued before it (still read).
GOLDEN_QUERY = CursorQuery("AAPL,MSFT", "1d", "2025-01-02", "2025-03-04T15:30:00Z", True, "desc")
GOLDEN_AFTER = Position("MSFT", datetime(2025, 2, 3, 5, 0, 0, 250000, tzinfo=UTC))
GOLDEN_SECRET = b"mdw-cursor-v1"
GOLDEN_PAYLOAD = (
    b'[2,["AAPL,MSFT","1d","2025-01-02","2025-03-04T15:30:00Z",true,"desc",true],'
    b'"MSFT",1738558800250000]'
)
GOLDEN = (
    "WzIsWyJBQVBMLE1TRlQiLCIxZCIsIjIwMjUtMDEtMDIiLCIyMDI1LTAzLTA0VDE1OjMwOjAwWiIsdHJ1ZSwiZGVzYyIs"
    "dHJ1ZV0sIk1TRlQiLDE3Mzg1NTg4MDAyNTAwMDBd.8HOj25OrWOB0z8OjLw3lTg"
)
# Version 2 as written before `adjusted` joined the query: six elements, split-adjusted pages.
WITHOUT_ADJUSTED_PAYLOAD = (
    b'[2,["AAPL,MSFT","1d","2025-01-02","2025-03-04T15:30:00Z",true,"desc"],'
    b'"MSFT",1738558800250000]'
)
WITHOUT_ADJUSTED = (
    "WzIsWyJBQVBMLE1TRlQiLCIxZCIsIjIwMjUtMDEtMDIiLCIyMDI1LTAzLTA0VDE1OjMwOjAwWiIsdHJ1ZSwiZGVzYyJd"
    "LCJNU0ZUIiwxNzM4NTU4ODAwMjUwMDAwXQ.h59QXz5I8LjRUVJoj78E7w"
)

V1_QUERY = CursorQuery("AAPL", "1d", "2025-01-02", "2025-03-04", True, "asc")
V1_AFTER = Position("AAPL", datetime(2025, 2, 3, 5, 0, 0, 250000, tzinfo=UTC))
V1_PAYLOAD = b'[1,["AAPL","1d","2025-01-02","2025-03-04",true],1738558800250000]'
V1_GOLDEN = (
    "WzEsWyJBQVBMIiwiMWQiLCIyMDI1LTAxLTAyIiwiMjAyNS0wMy0wNCIsdHJ1ZV0sMTczODU1ODgwMDI1MDAwMF0"
    ".BHhwoNihxiDWNj6cuYHYrA"
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: bytes, *, secret: bytes = GOLDEN_SECRET, length: int = 16) -> str:
    """A cursor for any payload, signed as the format says: HMAC-SHA256, first 16 bytes."""
    signature = hmac.new(secret, payload, hashlib.sha256).digest()[:length]
    return f"{b64(payload)}.{b64(signature)}"


def test_the_golden_cursor_is_what_the_format_says() -> None:
    assert signed(GOLDEN_PAYLOAD) == GOLDEN
    assert encode_cursor(GOLDEN_QUERY, GOLDEN_AFTER, secret=GOLDEN_SECRET) == GOLDEN
    assert decode_cursor(GOLDEN, GOLDEN_QUERY, secret=GOLDEN_SECRET) == GOLDEN_AFTER


def test_a_cursor_from_before_adjusted_reads_as_split_adjusted() -> None:
    assert signed(WITHOUT_ADJUSTED_PAYLOAD) == WITHOUT_ADJUSTED
    traded = msgspec.structs.replace(GOLDEN_QUERY, adjusted=False)

    assert decode_cursor(WITHOUT_ADJUSTED, GOLDEN_QUERY, secret=GOLDEN_SECRET) == GOLDEN_AFTER
    with pytest.raises(BadRequest, match="different query"):
        decode_cursor(WITHOUT_ADJUSTED, traded, secret=GOLDEN_SECRET)


def test_a_version_1_cursor_is_still_read_as_the_same_ascending_query() -> None:
    assert signed(V1_PAYLOAD) == V1_GOLDEN

    assert decode_cursor(V1_GOLDEN, V1_QUERY, secret=GOLDEN_SECRET) == V1_AFTER


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            CursorQuery("AAPL", "1d", "2025-01-02", "2025-03-04", True, "desc"), id="desc"
        ),
        pytest.param(CursorQuery("MSFT", "1d", "2025-01-02", "2025-03-04", True), id="symbol"),
        pytest.param(
            CursorQuery("AAPL", "1d", "2025-01-02T00:00:00Z", "2025-03-04", True), id="instant"
        ),
    ],
)
def test_a_version_1_cursor_of_another_query_is_refused(query: CursorQuery) -> None:
    with pytest.raises(BadRequest, match="different query"):
        decode_cursor(V1_GOLDEN, query, secret=GOLDEN_SECRET)


def test_the_signature_covers_the_position() -> None:
    for old, new in ((b"1738558800250000", b"1738558800250001"), (b'"MSFT",', b'"AAPL",')):
        moved = GOLDEN_PAYLOAD.replace(old, new)
        forged = f"{b64(moved)}.{GOLDEN.split('.')[1]}"

        with pytest.raises(BadRequest, match="invalid cursor"):
            decode_cursor(forged, GOLDEN_QUERY, secret=GOLDEN_SECRET)


@pytest.mark.parametrize(
    ("payload", "query"),
    [
        pytest.param(
            GOLDEN_PAYLOAD.replace(b"true", b"false"),
            CursorQuery("AAPL,MSFT", "1d", "2025-01-02", "2025-03-04T15:30:00Z", True, "desc"),
            id="validated_only",
        ),
        pytest.param(GOLDEN_PAYLOAD.replace(b'"AAPL,MSFT"', b'"AAPL"'), GOLDEN_QUERY, id="symbols"),
        pytest.param(GOLDEN_PAYLOAD.replace(b'"1d"', b'"1h"'), GOLDEN_QUERY, id="timeframe"),
        pytest.param(GOLDEN_PAYLOAD.replace(b'"2025-01-02"', b"null"), GOLDEN_QUERY, id="start"),
        pytest.param(
            GOLDEN_PAYLOAD.replace(b'"2025-03-04T15:30:00Z"', b'"2025-03-04"'),
            GOLDEN_QUERY,
            id="end",
        ),
        pytest.param(GOLDEN_PAYLOAD.replace(b'"desc"', b'"asc"'), GOLDEN_QUERY, id="sort"),
    ],
)
def test_a_validly_signed_cursor_of_another_query_is_refused(
    payload: bytes, query: CursorQuery
) -> None:
    with pytest.raises(BadRequest, match="different query"):
        decode_cursor(signed(payload), query, secret=GOLDEN_SECRET)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(signed(GOLDEN_PAYLOAD.replace(b"[2,", b"[3,", 1)), id="version-3"),
        pytest.param(signed(GOLDEN_PAYLOAD.replace(b"[2,", b"[0,", 1)), id="version-0"),
        pytest.param(signed(GOLDEN_PAYLOAD.replace(b"[2,", b"[1,", 1)), id="v2-body-as-v1"),
        pytest.param(signed(V1_PAYLOAD.replace(b"[1,", b"[2,", 1)), id="v1-body-as-v2"),
        pytest.param(signed(GOLDEN_PAYLOAD.replace(b'"desc"', b'"down"')), id="unknown-sort"),
        pytest.param(signed(b'["2",[]]'), id="version-not-a-number"),
        pytest.param(signed(b"[]"), id="empty-array"),
        pytest.param(signed(GOLDEN_PAYLOAD, length=15), id="short-signature"),
        pytest.param(signed(GOLDEN_PAYLOAD, length=32), id="full-signature"),
        pytest.param(signed(GOLDEN_PAYLOAD, secret=b"another-secret"), id="other-secret"),
        pytest.param(
            signed(GOLDEN_PAYLOAD.replace(b"1738558800250000", b"99999999999999999999")),
            id="position-out-of-range",
        ),
        pytest.param(signed(b"[2,[]]"), id="payload-shape"),
        pytest.param(GOLDEN + "==", id="padded-signature"),
        pytest.param(GOLDEN.replace(".", "=."), id="padded-payload"),
    ],
)
def test_tampered_fields_are_invalid(cursor: str) -> None:
    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor(cursor, GOLDEN_QUERY, secret=GOLDEN_SECRET)


def test_cursors_of_every_length_round_trip() -> None:
    # Unpadded base64 leaves 0, 2 or 3 characters past the last group of four; each decodes.
    remainders = set()
    for length in range(1, 9):
        query = CursorQuery("A" * length, "1d", None, None, False)
        cursor = encode_cursor(query, GOLDEN_AFTER, secret=GOLDEN_SECRET)
        remainders.add(len(cursor.split(".")[0]) % 4)

        assert decode_cursor(cursor, query, secret=GOLDEN_SECRET) == GOLDEN_AFTER

    assert remainders == {0, 2, 3}


def test_a_cursor_query_cannot_change_once_made() -> None:
    with pytest.raises(AttributeError):
        GOLDEN_QUERY.symbols = "MSFT"  # type: ignore[misc]
