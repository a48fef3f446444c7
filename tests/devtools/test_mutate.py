"""The mutation score: survivors listed as equivalent are left out; a listed one that was
killed is named as a stale listing; the rest count."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.mutate import DEFERRED_ANNOTATION, Mutant, _mutants, report

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


# cosmic-ray places an operator's mutant at the operator (line from 1, column from 0).
MODULE = """from __future__ import annotations

import msgspec


class Payload(msgspec.Struct):
    field: int | None


def f(a: int | None, *, b: str = "x" + "y") -> str | None:
    return a | 1
"""
SIGNATURE = 'def f(a: int | None, *, b: str = "x" + "y") -> str | None:'


def _dump(*mutations: tuple[str, int, int]) -> str:
    return "\n".join(
        json.dumps(
            [
                {"mutations": [{"operator_name": op, "occurrence": 0, "start_pos": [line, col]}]},
                {"test_outcome": "survived"},
            ]
        )
        for op, line, col in mutations
    )


def _mutants_of(source: str, dump: str, tmp_path: Path) -> dict[str, bool]:
    module = tmp_path / "module.py"
    module.write_text(source)
    return {m.operator: m.in_signature_annotation for m in _mutants(dump, module)}


def test_mutants_of_a_deferred_signature_annotation_are_equivalent(tmp_path):
    dump = _dump(
        ("parameter", 10, SIGNATURE.index("|")),
        ("return", 10, SIGNATURE.rindex("|")),
        ("default", 10, SIGNATURE.index("+")),  # a default value is evaluated
        ("struct field", 7, MODULE.splitlines()[6].index("|")),  # msgspec reads it at run time
        ("body", 11, MODULE.splitlines()[10].index("|")),
    )

    flags = _mutants_of(MODULE, dump, tmp_path)

    assert flags == {
        "parameter": True,
        "return": True,
        "default": False,
        "struct field": False,
        "body": False,
    }
    survivor = Mutant("return", 10, SIGNATURE, 0, "survived", in_signature_annotation=True)
    assert report("m.py", [survivor]).splitlines() == [
        "m.py: 1 mutants, 1 equivalent (listed in EQUIVALENT)",
        f"  equivalent: return on line 10: {SIGNATURE} ({DEFERRED_ANNOTATION})",
        "killed 0 of 0 counted: 100.0%",
    ]


def test_annotations_are_evaluated_where_the_module_does_not_defer_them(tmp_path):
    source = MODULE.replace("from __future__ import annotations\n", "#\n")
    dump = _dump(("parameter", 10, SIGNATURE.index("|")))

    assert _mutants_of(source, dump, tmp_path) == {"parameter": False}
