"""The API key format: `mdw_` + 32 random bytes in base62 + a 6-character CRC32 checksum.

As with GitHub's tokens, the checksum lets a mistyped or truncated key be rejected before any
database lookup, and the fixed prefix lets secret scanners recognise a leaked key. Only the
SHA-256 of a key is stored; the raw key exists in the response that created it.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

PREFIX = "mdw_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(_ALPHABET)
_BODY_LENGTH = 43  # 32 bytes need 43 base62 digits
_CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
DISPLAY_PREFIX_LENGTH = len(PREFIX) + 8


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), _CHECKSUM_LENGTH)


def generate_key() -> str:
    return key_from_bytes(secrets.token_bytes(32))


def key_from_bytes(random: bytes) -> str:
    """The key for 32 random bytes: their big-endian number in base62, then the checksum."""
    if len(random) != 32:
        raise ValueError("a key is made from exactly 32 bytes")
    body = _base62(int.from_bytes(random, "big"), _BODY_LENGTH)
    return f"{PREFIX}{body}{_checksum(PREFIX + body)}"


def is_well_formed(raw: str) -> bool:
    """Length, prefix, alphabet and checksum: everything that can be checked offline."""
    if len(raw) != KEY_LENGTH or not raw.startswith(PREFIX):
        return False
    rest = raw[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    return _checksum(raw[:-_CHECKSUM_LENGTH]) == raw[-_CHECKSUM_LENGTH:]


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def display_prefix(raw: str) -> str:
    """The part of a key safe to show and log: enough to tell keys apart, useless to an
    attacker (8 of 43 random characters)."""
    return raw[:DISPLAY_PREFIX_LENGTH]
