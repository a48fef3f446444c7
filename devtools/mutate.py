"""Mutation testing of one module against its own tests, with cosmic-ray.

    make mutate MODULE=chalicelib/keys/tokens.py

cosmic-ray rewrites the module once per mutant (an operator swapped, a constant changed, a
condition negated, ...) and runs the module's tests; a mutant the tests do not notice
"survives". The work happens in a temporary copy of the checkout, so the working tree is never
touched. Mutants equivalent to the original (no test can tell them apart) are listed in
EQUIVALENT below with the reason, and left out of the score, as are mutants inside a function
signature's annotation in a module that defers annotations (never evaluated, so never listed one
by one); docs/TESTING.md records the scores. Takes minutes per module: not part of CI.

Each mutant costs one run of the module's tests, so the run is kept short: the tests run with
the `mutate` Hypothesis profile (a few fixed examples, a failure reported as found rather than
shrunk: tests/conftest.py), one PostgreSQL server serves every run instead of one started per
run, and a mutant whose tests take several times as long as the unmutated ones counts as killed
(it loops: a mutant that never ends is a regression the tests detect).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from chalicelib.config import PROJECT_ROOT

# Each module and the tests that are its own.
TESTS = {
    "chalicelib/keys/tokens.py": ["tests/keys/test_tokens.py"],
    "chalicelib/marketdata/cursor.py": ["tests/marketdata/test_cursor.py"],
    "chalicelib/sqlsplit.py": ["tests/test_sqlsplit.py"],
    "chalicelib/backfill/validation.py": ["tests/backfill/test_validation.py"],
    "chalicelib/keys/access.py": ["tests/keys/test_access.py"],
}
# A mutant's tests may run this many times as long as the unmutated tests, and at least
# MIN_TIMEOUT_SECONDS, before the mutant counts as killed: generous, since the machine may be
# busy, and far below the hour a looping mutant would otherwise hold the run.
TIMEOUT_FACTOR = 4
MIN_TIMEOUT_SECONDS = 20


def _copy_checkout(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for raw in filter(None, files):
        name = raw.decode()
        source, destination = PROJECT_ROOT / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            destination.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, destination)


def _test_command(tests: list[str]) -> str:
    return (
        f"{sys.executable} -m pytest -x -q -p no:cacheprovider --hypothesis-profile=mutate "
        + " ".join(tests)
    )


def _config(module: str, tests: list[str], timeout: float) -> str:
    return "\n".join(
        [
            "[cosmic-ray]",
            f'module-path = "{module}"',
            f"timeout = {timeout:.0f}",
            "excluded-modules = []",
            f'test-command = "{_test_command(tests)}"',
            "",
            "[cosmic-ray.distributor]",
            'name = "local"',
            "",
        ]
    )


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


class Mutant(NamedTuple):
    operator: str
    line: int
    source: str  # the mutated line as written, stripped
    nth: int  # which of this operator's mutants on this line, from 0
    outcome: str  # killed, survived, incompetent, or skipped
    # Inside a function's parameter or return annotation in a module that defers annotations.
    in_signature_annotation: bool = False


DEFERRED_ANNOTATION = (
    "a function signature's annotation, never evaluated (from __future__ import annotations)"
)

Position = tuple[int, int]  # line from 1, column in UTF-8 bytes from 0 (as ast counts)


def signature_annotation_spans(source: str) -> list[tuple[Position, Position]]:
    """Where the parameter and return annotations of the module's functions are, when the module
    defers annotations; none otherwise.

    Only functions': a class body's annotations stay, since msgspec Structs and dataclasses read
    them at run time."""
    tree = ast.parse(source)
    defers = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not defers:
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            parameters = [
                *arguments.posonlyargs,
                *arguments.args,
                *arguments.kwonlyargs,
                *filter(None, [arguments.vararg, arguments.kwarg]),
            ]
            for annotation in [*(p.annotation for p in parameters), node.returns]:
                if annotation is not None and annotation.end_lineno is not None:
                    spans.append(
                        (
                            (annotation.lineno, annotation.col_offset),
                            (annotation.end_lineno, annotation.end_col_offset or 0),
                        )
                    )
    return spans


def _mutants(dump: str, module: Path) -> list[Mutant]:
    source = module.read_text()
    lines = source.splitlines()
    spans = signature_annotation_spans(source)

    def in_annotation(line: int, column: int) -> bool:
        # cosmic-ray counts the column in characters, ast in UTF-8 bytes.
        at = (line, len(lines[line - 1][:column].encode()))
        return any(start <= at < end for start, end in spans)

    entries = []
    for raw in dump.splitlines():
        item, result = json.loads(raw)
        (mutation,) = item["mutations"]
        outcome = "pending" if result is None else result["test_outcome"] or "skipped"
        line, column = mutation["start_pos"]
        entries.append((mutation["operator_name"], mutation["occurrence"], line, column, outcome))
    found = []
    seen: dict[tuple[str, int], int] = {}
    for operator, _, line, column, outcome in sorted(entries):
        nth = seen.get((operator, line), 0)
        seen[(operator, line)] = nth + 1
        found.append(
            Mutant(
                operator,
                line,
                lines[line - 1].strip(),
                nth,
                outcome,
                in_annotation(line, column),
            )
        )
    return found


def _why_equivalent(listed: dict[tuple[Any, ...], str], mutant: Mutant) -> str | None:
    """Why this mutant is equivalent: it changes a deferred annotation of a function signature,
    or it is listed by operator and line, or by operator, line and index where one line holds
    several mutants of the operator."""
    if mutant.in_signature_annotation:
        return DEFERRED_ANNOTATION
    return listed.get((mutant.operator, mutant.source, mutant.nth)) or listed.get(
        (mutant.operator, mutant.source)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__)
    parser.add_argument("module", choices=sorted(TESTS), help="the module to mutate")
    parser.add_argument(
        "--cosmic-ray", dest="bin", required=True, help="folder with the cosmic-ray commands"
    )
    args = parser.parse_args(argv)
    tools = Path(args.bin).resolve()  # the commands run in the copy
    import pgserver  # here, not at the top: importing it warns when no runtime dir is set

    tests = TESTS[args.module]
    with (
        tempfile.TemporaryDirectory(prefix="mdw-mutate-") as folder,
        # One server for the whole run, stopped at its end; each test run creates its
        # database there (TEST_DATABASE_SERVER_URL, tests/conftest.py).
        pgserver.get_server(Path(folder) / "pg") as server,
    ):
        work = Path(folder) / "checkout"
        _copy_checkout(work)
        env = {
            **os.environ,
            "PYTHONPATH": str(work),
            "TEST_DATABASE_SERVER_URL": server.get_uri(),
        }

        def run(*command: str) -> str:
            done = subprocess.run(
                command, cwd=work, env=env, check=True, text=True, capture_output=True
            )
            return done.stdout

        # The baseline: the unmutated module must pass its tests, and their time sets the
        # timeout of each mutant's; the faster of two runs, so a moment of load on a shared
        # machine does not stretch every looping mutant's wait.
        baseline = min(_timed(lambda: run(*_test_command(tests).split())) for _ in range(2))
        timeout = max(MIN_TIMEOUT_SECONDS, TIMEOUT_FACTOR * baseline)
        print(f"{args.module}: tests pass unmutated in {baseline:.1f} s; timeout {timeout:.0f} s")
        (work / "mutate.toml").write_text(_config(args.module, tests, timeout))
        run(str(tools / "cosmic-ray"), "init", "mutate.toml", "session.sqlite")
        run(str(tools / "cosmic-ray"), "exec", "mutate.toml", "session.sqlite")
        mutants = _mutants(
            run(str(tools / "cosmic-ray"), "dump", "session.sqlite"), work / args.module
        )
    print(report(args.module, mutants))
    return 0


def report(module: str, mutants: list[Mutant]) -> str:
    """The score over every mutant but the survivors listed as equivalent, and each survivor.

    A listed mutant that the tests killed counts as killed, and is named: its listing is
    wrong (the line changed, or a test now tells it apart)."""
    listed = EQUIVALENT.get(module, {})
    excused = [m for m in mutants if m.outcome == "survived" and _why_equivalent(listed, m)]
    counted = [m for m in mutants if m not in excused and m.outcome != "skipped"]
    killed = [m for m in counted if m.outcome in ("killed", "incompetent")]
    survivors = [m for m in counted if m.outcome == "survived"]
    lines = [f"{module}: {len(mutants)} mutants, {len(excused)} equivalent (listed in EQUIVALENT)"]
    lines += [
        f"  equivalent: {m.operator} on line {m.line}: {m.source} ({_why_equivalent(listed, m)})"
        for m in excused
    ]
    lines += [
        f"  listed as equivalent but killed: {m.operator} on line {m.line}: {m.source}"
        for m in killed
        if _why_equivalent(listed, m)
    ]
    lines += [f"  SURVIVED: {m.operator} on line {m.line}: {m.source}" for m in survivors]
    score = len(killed) / len(counted) if counted else 1.0
    lines.append(f"killed {len(killed)} of {len(counted)} counted: {score:.1%}")
    return "\n".join(lines)


# Mutants no test can tell from the original, by (operator, the line as written): the module
# behaves identically. Listed with the reason; docs/TESTING.md repeats them.
EQUIVALENT: dict[str, dict[tuple[Any, ...], str]] = {
    "chalicelib/backfill/validation.py": {
        (
            "core/ReplaceBinaryOperator_Sub_BitXor",
            "INFORMATIONAL_FLAGS: frozenset[str] = frozenset(FLAG_NAMES) - SEVERE_FLAGS",
        ): "SEVERE_FLAGS is a subset of FLAG_NAMES: difference and symmetric difference agree",
        ("core/ReplaceBinaryOperator_Mul_Div", "*,"): "the keyword-only `*` becomes the "
        "positional-only `/`: every call passes the bars by position and the rest by name",
        ("core/ReplaceComparisonOperator_Eq_LtE", "if offsets == {0}:"): (
            "a non-empty set of offsets is a subset of {0} only when it is {0}"
        ),
        ("core/ReplaceComparisonOperator_Eq_GtE", "elif len(ordered) == window_size:"): (
            "the window never holds more than window_size volumes"
        ),
        ("core/ReplaceComparisonOperator_Eq_Is", "elif len(ordered) == window_size:"): (
            "small ints are one object each in CPython"
        ),
        ("core/ReplaceComparisonOperator_NotEq_Gt", 'exchange_days = asset_class != "crypto"'): (
            "stock and etf both sort after crypto"
        ),
        (
            "core/ReplaceComparisonOperator_Lt_LtE",
            "if h < low or h < (o if o > c else c) or low > (o if o < c else c):",
            2,
        ): "o if o <= c else c is the same minimum",
        (
            "core/ReplaceComparisonOperator_Gt_GtE",
            "if h < low or h < (o if o > c else c) or low > (o if o < c else c):",
            0,
        ): "o if o >= c else c is the same maximum",
        ("core/ReplaceComparisonOperator_Eq_Is", "if offsets == {0}:"): (
            "never true, so the general check `t % length_ms in allowed` runs: with offsets {0} "
            "it answers as the fast path does"
        ),
        ("core/ReplaceComparisonOperator_Eq_Lt", "if offsets == {0}:"): (
            "offsets always hold 0, so they are never a proper subset of {0}: as for Eq_Is"
        ),
        ("core/NumberReplacer", "if offsets == {0}:"): (
            "offsets always hold 0, so they never equal {1} or {-1}: as for Eq_Is"
        ),
        ("core/ReplaceComparisonOperator_Eq_GtE", 'weekly = timeframe == "1w"'): (
            "only 1d and 1w reach this line (shorter ones returned), and 1d sorts before 1w"
        ),
        (
            "core/ReplaceComparisonOperator_Eq_GtE",
            "return not weekly or local.weekday() == _SUNDAY",
        ): "Sunday (6) is the last weekday: >= 6 is == 6",
        (
            "core/ReplaceComparisonOperator_Eq_Is",
            "return not weekly or local.weekday() == _SUNDAY",
        ): "small ints are one object each in CPython",
        ("core/ReplaceComparisonOperator_Eq_LtE", "even = window_size % 2 == 0"): (
            "a remainder of 2 is 0 or 1: <= 0 is == 0"
        ),
        ("core/ReplaceComparisonOperator_Eq_LtE", 'crypto = asset_class == "crypto"'): (
            "stock and etf both sort after crypto"
        ),
        ("core/ReplaceComparisonOperator_Eq_LtE", "return lambda t: t % length_ms == 0"): (
            "a remainder of a positive length is never negative: <= 0 is == 0"
        ),
        ("core/ReplaceComparisonOperator_Eq_LtE", "return lambda t: t % _MS_PER_DAY == 0"): (
            "as for `t % length_ms == 0`"
        ),
        ("core/ReplaceTrueWithFalse", "@dataclass(frozen=True, slots=True)", 1): (
            "slots saves memory; no code adds attributes"
        ),
        ("core/RemoveDecorator", "@property"): (
            "the Protocol's members are read, never called: a property or a method reads alike"
        ),
    },
    "chalicelib/sqlsplit.py": {
        (
            "core/ReplaceBinaryOperator_Add_Mul",
            "i = n if end == -1 else end + 1",
        ): "end * 1 stops on the newline, which the next step reads as whitespace",
        (
            "core/ReplaceBinaryOperator_Add_Pow",
            "i = n if end == -1 else end + 1",
        ): "as for Add_Mul",
        (
            "core/ReplaceComparisonOperator_Eq_LtE",
            "i = n if end == -1 else end + 1",
        ): "find returns -1 or an index: <= -1 is == -1",
        (
            "core/ReplaceComparisonOperator_Eq_Is",
            "if ch == quote:",
        ): "one-character strings are one object each in CPython",
        (
            "core/ReplaceBinaryOperator_Add_FloorDiv",
            "i = n if end == -1 else end + 1",
        ): "end // 1 is end: as for Add_Mul",
        (
            "core/ReplaceBinaryOperator_Add_BitOr",
            "i = n if end == -1 else end + 1",
        ): "end | 1 is end + 1 or end: the newline is read next either way, as whitespace",
        ("core/NumberReplacer", "i = n if end == -1 else end + 1", 3): ("end + 0: as for Add_Mul"),
        (
            "core/ReplaceComparisonOperator_Lt_NotEq",
            "while i < n:",
        ): "no step moves the index past n, so it reaches n exactly",
        ("core/ReplaceComparisonOperator_Lt_NotEq", "while at < n:"): "as for `while i < n:`",
        ("core/ReplaceComparisonOperator_Lt_LtE", "while at < n:"): (
            "at n nothing starts: one more step moves past n, and the end is n either way"
        ),
        (
            "core/ReplaceComparisonOperator_Eq_GtE",
            'elif ch == "$" and not _continues_word(sql, i) and '
            "(tag := _DOLLAR_TAG.match(sql, i)):",
        ): "the tag pattern itself must match a $ at that position",
        (
            "core/ReplaceComparisonOperator_Eq_LtE",
            "i = n if end == -1 else end + len(tag.group(0))",
        ): "find returns -1 or an index: <= -1 is == -1",
        (
            "core/ReplaceComparisonOperator_Eq_LtE",
            'elif ch == "$" and not _continues_word(sql, i) and '
            "(tag := _DOLLAR_TAG.match(sql, i)):",
        ): "as for Eq_GtE",
        ("core/ReplaceComparisonOperator_Eq_LtE", "if depth == 0:"): (
            "the opening /* raises the depth before any */ lowers it: it never goes below 0"
        ),
        ("core/ReplaceComparisonOperator_Gt_NotEq", "return i > 0 and _is_word_char(sql[i - 1])"): (
            "an index is never negative: > 0 is != 0"
        ),
        (
            "core/ReplaceComparisonOperator_Gt_NotEq",
            'return quote > 0 and sql[quote - 1] in "Ee" and not _continues_word(sql, quote - 1)',
        ): "as for _continues_word",
        (
            "core/ReplaceComparisonOperator_Lt_NotEq",
            "if j + 1 < n and sql[j + 1] == quote:",
        ): "inside the loop j < n, so j + 1 <= n: < n is != n",
        ("core/ReplaceComparisonOperator_Eq_Is", "if j + 1 < n and sql[j + 1] == quote:"): (
            "as for `if ch == quote:`"
        ),
        (
            "core/ReplaceBinaryOperator_Mul_Div",
            "def _quoted_end(sql: str, i: int, *, backslash_escapes: bool) -> int:",
        ): "the keyword-only `*` becomes the positional-only `/`: every call passes sql and i "
        "by position and backslash_escapes by name",
        ("core/NumberReplacer", "if j + 1 < n and sql[j + 1] == quote:", 0): (
            "j + 2 < n misses only a doubled quote as the last two characters: closing at the "
            "first and reopening at the second runs to the end of the text just as well"
        ),
    },
    "chalicelib/marketdata/cursor.py": {
        (
            "core/ReplaceBinaryOperator_Mul_Div",
            "def encode_cursor(query: CursorQuery, after: Position, *, secret: bytes) -> str:",
        ): "the keyword-only `*` becomes the positional-only `/`: every call already passes "
        "query and after by position and secret by name",
        (
            "core/ReplaceBinaryOperator_Mul_Div",
            "def decode_cursor(cursor: str, query: CursorQuery, *, secret: bytes) -> Position:",
        ): "as for encode_cursor",
        (
            "core/ReplaceComparisonOperator_Eq_Is",
            "if version == 1:",
        ): "small ints are one object each in CPython",
        (
            "core/ReplaceComparisonOperator_Eq_Is",
            "elif version == _VERSION:",
        ): "small ints are one object each in CPython",
        (
            "core/ReplaceUnaryOperator_USub_UAdd",
            'return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))',
        ): "the decoder accepts surplus padding: len % 4 pads 2 where 2 is needed and 3 where 1 is",
        (
            "core/ReplaceUnaryOperator_Delete_USub",
            'return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))',
        ): "as for USub_UAdd",
    },
    "chalicelib/keys/access.py": {
        ("core/ReplaceComparisonOperator_Eq_Is", "if which == CURRENT:"): (
            "`which` is only ever what credential_for returned: this module's own CURRENT or "
            "PREVIOUS object, or None"
        ),
        ("core/ReplaceComparisonOperator_Eq_Is", "if which == PREVIOUS and ("): (
            "as for `which == CURRENT`"
        ),
        (
            "core/ReplaceComparisonOperator_Eq_GtE",
            "address.version == network.version and address in network",
        ): "`address in network` is already False across IP versions",
        (
            "core/ReplaceComparisonOperator_Eq_LtE",
            "address.version == network.version and address in network",
        ): "as for Eq_GtE",
        (
            "core/ReplaceComparisonOperator_Eq_Is",
            "address.version == network.version and address in network",
        ): "small ints (4, 6) are one object each in CPython",
        ("core/ReplaceTrueWithFalse", "class Credential(msgspec.Struct, frozen=True):"): (
            "no code assigns to a Credential's fields or hashes one; it is built per request "
            "and never cached (the cache holds statuses)"
        ),
    },
    "chalicelib/keys/tokens.py": {
        (
            "core/ReplaceBinaryOperator_Add_BitOr",
            "KEY_LENGTH = len(PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH",
            0,
        ): "4 | 43 == 4 + 43",
        (
            "core/ReplaceBinaryOperator_Add_BitXor",
            "KEY_LENGTH = len(PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH",
            0,
        ): "4 ^ 43 == 4 + 43",
        (
            "core/ReplaceBinaryOperator_Add_BitOr",
            "DISPLAY_PREFIX_LENGTH = len(PREFIX) + 8",
        ): "4 | 8 == 4 + 8",
        (
            "core/ReplaceBinaryOperator_Add_BitXor",
            "DISPLAY_PREFIX_LENGTH = len(PREFIX) + 8",
        ): "4 ^ 8 == 4 + 8",
        (
            "core/ReplaceComparisonOperator_NotEq_IsNot",
            "if len(random) != 32:",
        ): "small ints are one object each in CPython",
        (
            "core/ReplaceComparisonOperator_NotEq_IsNot",
            "if len(raw) != KEY_LENGTH or not raw.startswith(PREFIX):",
        ): "small ints are one object each in CPython",
    },
}


if __name__ == "__main__":
    sys.exit(main())
