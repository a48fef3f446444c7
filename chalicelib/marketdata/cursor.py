"""Keyset cursors for `GET /api/v1/historical/{symbol}`: opaque, signed, bound to one query.

A cursor carries the query it belongs to (symbol, timeframe, start, end, validated_only) and the
start time of the last bar served. The next page reads `time > last`, so bars inserted while a
client pages never shift or repeat a page. The HMAC makes a garbled or hand-edited cursor a
clear 400 instead of a silently different page; cursors name no secret data, so the signature
is about integrity, and `CURSOR_SECRET` only has to be the same across a deployment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta

import msgspec

from chalicelib.errors import BadRequest

_VERSION = 1
_SIGNATURE_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CursorQuery(msgspec.Struct, frozen=True, array_like=True):
    """The parts of a historical query a cursor is valid for (the page size may change)."""

    symbol: str
    timeframe: str
    start: date | None
    end: date | None
    validated_only: bool


class _Payload(msgspec.Struct, frozen=True, array_like=True):
    version: int
    query: CursorQuery
    after_us: int  # microseconds since the epoch of the last bar served


def encode_cursor(query: CursorQuery, after: datetime, *, secret: bytes) -> str:
    """The cursor for the page after the bar that starts at `after`."""
    after_us = (after - _EPOCH) // timedelta(microseconds=1)
    payload = msgspec.json.encode(_Payload(_VERSION, query, after_us))
    signature = hmac.new(secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(cursor: str, query: CursorQuery, *, secret: bytes) -> datetime:
    """The `after` time a cursor carries, after checking its signature and its query."""
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
        decoded = msgspec.json.decode(payload, type=_Payload)
    except msgspec.MsgspecError:
        raise invalid from None
    if decoded.version != _VERSION:
        raise invalid
    if decoded.query != query:
        raise BadRequest(
            "the cursor belongs to a different query: keep symbol, timeframe, start, end and "
            "validated_only unchanged while paging",
            details={"parameter": "cursor"},
        )
    try:
        return _EPOCH + timedelta(microseconds=decoded.after_us)
    except OverflowError:
        raise invalid from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # Cursors are written unpadded; one cursor has one spelling.
    if not text.isascii() or "=" in text:
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
