"""The layers import downwards only: `chalicelib.market` is the bottom every domain shares, the
backfill does not reach into the worker's side, and the worker reaches the backfill only
through its service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CHALICELIB = Path(__file__).resolve().parents[2] / "chalicelib"


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every `chalicelib` module each file of `package` imports, at any depth of the file."""
    found: dict[str, set[str]] = {}
    for path in sorted((CHALICELIB / package).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.update(
                    f"{node.module}.{alias.name}" if node.module == "chalicelib" else node.module
                    for alias in node.names
                )
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[f"{package}/{path.name}"] = {name for name in names if name.startswith("chalicelib")}
    return found


def test_the_market_layer_imports_only_itself_and_the_errors() -> None:
    imports = imported_modules("market")

    assert set(imports) >= {"market/calendar.py", "market/tickers.py", "market/timeframes.py"}
    for module, names in imports.items():
        outside = {n for n in names if not n.startswith("chalicelib.market")}
        assert outside <= {"chalicelib.errors"}, module


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # The domains above the market layer never reach up into the jobs that drive them.
        ("backfill", ("chalicelib.ops",)),
        ("marketdata", ("chalicelib.backfill", "chalicelib.ops")),
        # The worker and the planner use the backfill's service, not its SQL or its rules.
        (
            "ops",
            (
                "chalicelib.backfill.repository",
                "chalicelib.backfill.validation",
                "chalicelib.backfill.sources",
            ),
        ),
    ],
)
def test_a_package_does_not_climb_over_its_neighbours(
    package: str, forbidden: tuple[str, ...]
) -> None:
    for module, names in imported_modules(package).items():
        assert not {n for n in names if n.startswith(forbidden)}, module
