"""The mutation score: survivors listed as equivalent are left out; a listed one that was
killed is named as a stale listing; the rest count."""

from __future__ import annotations

from devtools.mutate import Mutant, report

LINE = "KEY_LENGTH = len(PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH"
ADD_OR = "core/ReplaceBinaryOperator_Add_BitOr"


def test_equivalent_survivors_are_excused_by_line_and_index():
    mutants = [
        Mutant(ADD_OR, 19, LINE, 0, "survived"),  # listed, index 0: excused
        Mutant(ADD_OR, 19, LINE, 1, "survived"),  # same line, index 1: not listed
        Mutant("core/NumberReplacer", 20, "DISPLAY_PREFIX_LENGTH = len(PREFIX) + 8", 0, "killed"),
        Mutant("core/NumberReplacer", 21, "x = 1", 0, "skipped"),
    ]

    text = report("chalicelib/keys/tokens.py", mutants)

    assert text.splitlines() == [
        "chalicelib/keys/tokens.py: 4 mutants, 1 equivalent (listed in EQUIVALENT)",
        f"  equivalent: {ADD_OR} on line 19: {LINE} (4 | 43 == 4 + 43)",
        f"  SURVIVED: {ADD_OR} on line 19: {LINE}",
        "killed 1 of 2 counted: 50.0%",
    ]


def test_a_listed_mutant_that_was_killed_is_a_stale_listing():
    text = report("chalicelib/keys/tokens.py", [Mutant(ADD_OR, 19, LINE, 0, "killed")])

    assert f"  listed as equivalent but killed: {ADD_OR} on line 19: {LINE}" in text
    assert text.endswith("killed 1 of 1 counted: 100.0%")
