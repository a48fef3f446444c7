"""The key format: `mdw_` + 43 base62 characters + a 6-character CRC32 checksum."""

from __future__ import annotations

import re

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
