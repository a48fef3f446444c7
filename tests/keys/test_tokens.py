"""The key format: `mdw_` + 43 base62 characters + a 6-character CRC32 checksum."""

from __future__ import annotations

import re
import zlib

import pytest

from chalicelib.keys import tokens


def test_generated_keys_are_well_formed_unique_and_recognisable():
    keys = {tokens.generate_key() for _ in range(200)}

    assert len(keys) == 200
    for raw_key in keys:
        assert re.fullmatch(r"mdw_[0-9A-Za-z]{49}", raw_key)
        assert len(raw_key) == tokens.KEY_LENGTH == 53
        assert tokens.is_well_formed(raw_key)


def test_any_single_character_change_is_caught_offline():
    raw_key = tokens.generate_key()
    for position in range(4, len(raw_key)):
        replacement = "A" if raw_key[position] != "A" else "B"
        mistyped = raw_key[:position] + replacement + raw_key[position + 1 :]
        assert not tokens.is_well_formed(mistyped), position


def test_display_prefix_and_hash():
    raw_key = tokens.generate_key()

    assert tokens.display_prefix(raw_key) == raw_key[:12]
    assert len(tokens.hash_key(raw_key)) == 32
    assert tokens.hash_key(raw_key) != tokens.hash_key(tokens.generate_key())


# Known answers: a stored key is found by the SHA-256 of exactly these characters, so any change
# to the alphabet, the digit order, the checksum or the hash would lock every holder out.
KNOWN_KEYS = [
    (
        bytes(range(32)),
        "mdw_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf4Z4D14",
        "5326204bc19c6a1e75f1e040b32655c219bb3c70f04e3bf9ec512ef85f139f01",
    ),
    (
        b"\xff" * 32,
        "mdw_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp12L5neQ",
        "063c8fdc809481c283a7a22bd4aeac87ce56ae8a28095d1156fc3a609271daa1",
    ),
    (
        bytes(32),
        "mdw_00000000000000000000000000000000000000000003t0pqI",
        "31ad839e53e79ebb58f8530608e5f29b471664e39b4f671a4801812dc7f86b06",
    ),
]


def test_known_bytes_give_known_keys_and_stored_hashes():
    for random, key, stored_hash in KNOWN_KEYS:
        assert tokens.key_from_bytes(random) == key
        assert tokens.is_well_formed(key)
        assert tokens.hash_key(key).hex() == stored_hash
        assert tokens.display_prefix(key) == key[:12]


def test_the_checksum_is_the_crc32_of_prefix_and_body_in_base62():
    # Written out independently of the module: CRC32 as a six-digit base62 number.
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for _, key, _ in KNOWN_KEYS:
        checksum = sum(alphabet.index(c) * 62**i for i, c in enumerate(reversed(key[-6:])))
        assert checksum == zlib.crc32(key[:-6].encode())


def test_the_body_is_the_big_endian_number_in_base62():
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for random, key, _ in KNOWN_KEYS:
        body = key[4:-6]
        assert sum(alphabet.index(c) * 62**i for i, c in enumerate(reversed(body))) == (
            int.from_bytes(random, "big")
        )


def test_postgresql_computes_the_same_stored_hash(conn):
    for _, key, stored_hash in KNOWN_KEYS:
        row = conn.execute("SELECT encode(sha256(convert_to(%s, 'UTF8')), 'hex')", (key,))
        assert row.fetchone() == (stored_hash,)


def checksummed(text: str) -> str:
    """`text` with a correct checksum, so only the other checks can refuse it."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    number, digits = zlib.crc32(text.encode()), ""
    for _ in range(6):
        number, remainder = divmod(number, 62)
        digits = alphabet[remainder] + digits
    return text + digits


BODY = KNOWN_KEYS[0][1][4:-6]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(checksummed("mdw_" + BODY[1:]), id="one-character-short"),
        pytest.param(checksummed("mdw_0" + BODY), id="one-character-long"),
        pytest.param(checksummed("mdx_" + BODY), id="other-prefix"),
        pytest.param(checksummed("MDW_" + BODY), id="prefix-case"),
        pytest.param(checksummed("mdw_" + BODY[:20] + "-" + BODY[21:]), id="outside-alphabet"),
    ],
)
def test_length_prefix_and_alphabet_are_checked_besides_the_checksum(raw):
    assert not tokens.is_well_formed(raw)


def test_the_checksum_helper_agrees_with_the_format():
    assert checksummed("mdw_" + BODY) == KNOWN_KEYS[0][1]


@pytest.mark.parametrize("size", [0, 31, 33])
def test_a_key_is_made_from_exactly_32_bytes(size):
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        tokens.key_from_bytes(bytes(size))
