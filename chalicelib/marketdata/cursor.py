"""Keyset cursors for the bar endpoints: opaque, signed, bound to one query.

A cursor carries the query it belongs to (symbols, timeframe, start, end, validated_only, sort,
adjusted) and the position of the last bar served: its symbol and start time. The next page
reads past that position in the query's order, so bars inserted while a client pages never
shift or repeat a page. The HMAC makes a garbled or hand-edited cursor a clear 400 instead of a
silently different page; cursors name no secret data, so the signature is about integrity, and
`CURSOR_SECRET` only has to be the same across a deployment.

Format versions (the first element of the signed JSON array):
1. `[1, [symbol, timeframe, start date|null, end date|null, validated_only], after_us]`:
   one symbol, dates only, oldest first. Still read, as the same query with `sort=asc`, so a
   client paging across a release keeps its place; never written any more.
2. `[2, [symbols, timeframe, start|null, end|null, validated_only, sort, adjusted],
   after_symbol, after_us]`: `symbols` is the comma-joined list, `start`/`end` the bounds'
   canonical spelling (a date, or an RFC 3339 UTC instant). Cursors written before `adjusted`
   existed end the query after `sort` and read as `adjusted=true`, the prices they paged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from chalicelib.errors import BadRequest

_VERSION = 2
_SIGNATURE_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Sort = Literal["asc", "desc"]


class CursorQuery(msgspec.Struct, frozen=True, array_like=True):
    """The parts of a bar query a cursor is valid for (the page size may change)."""

    symbols: str
    timeframe: str
    start: str | None
    end: str | None
    validated_only: bool
    sort: Sort = "asc"
    adjusted: bool = True


class Position(msgspec.Struct, frozen=True):
    """The last bar a page served: the next page starts just past it, in the query's order."""

    symbol: str
    time: datetime


class _Version(msgspec.Struct, frozen=True, array_like=True):
    version: int


class _QueryV1(msgspec.Struct, frozen=True, array_like=True):
    symbol: str
    timeframe: str
    start: str | None
    end: str | None
    validated_only: bool


class _PayloadV1(msgspec.Struct, frozen=True, array_like=True):
    version: int
    query: _QueryV1
    after_us: int


class _Payload(msgspec.Struct, frozen=True, array_like=True):
    version: int
    query: CursorQuery
    after_symbol: str
    after_us: int  # microseconds since the epoch of the last bar served


def encode_cursor(query: CursorQuery, after: Position, *, secret: bytes) -> str:
    """The cursor for the page after the bar at `after`."""
    after_us = (after.time - _EPOCH) // timedelta(microseconds=1)
    payload = msgspec.json.encode(_Payload(_VERSION, query, after.symbol, after_us))
    signature = hmac.new(secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(cursor: str, query: CursorQuery, *, secret: bytes) -> Position:
    """The position a cursor carries, after checking its signature and its query."""
    invalid = BadRequest(
        "invalid cursor: pass next_cursor exactly as a previous page returned it, or start "
        "again without a cursor",
        details={"parameter": "cursor"},
    )
    encoded_payload, dot, encoded_signature = cursor.partition(".")
    if not dot:
        raise invalid
    try:
        payload = _unb64(encoded_payload)
        signature = _unb64(encoded_signature)
    except (ValueError, binascii.Error):
        raise invalid from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not hmac.compare_digest(signature, expected):
        raise invalid
    try:
        # Only the version is read first: the rest of the array is shaped by it.
        version = msgspec.json.decode(
            msgspec.json.decode(payload, type=list[msgspec.Raw])[0], type=int
        )
        if version == 1:
            old = msgspec.json.decode(payload, type=_PayloadV1)
            carried = CursorQuery(
                old.query.symbol,
                old.query.timeframe,
                old.query.start,
                old.query.end,
                old.query.validated_only,
                "asc",
            )
            after_symbol, after_us = old.query.symbol, old.after_us
        elif version == _VERSION:
            decoded = msgspec.json.decode(payload, type=_Payload)
            carried, after_symbol, after_us = decoded.query, decoded.after_symbol, decoded.after_us
        else:
            raise invalid
    except (msgspec.MsgspecError, IndexError):
        raise invalid from None
    if carried != query:
        raise BadRequest(
            "the cursor belongs to a different query: keep symbols, timeframe, start, end, "
            "validated_only, sort and adjusted unchanged while paging",
            details={"parameter": "cursor"},
        )
    try:
        return Position(after_symbol, _EPOCH + timedelta(microseconds=after_us))
    except OverflowError:
        raise invalid from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # Cursors are written unpadded; one cursor has one spelling.
    if not text.isascii() or "=" in text:
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
