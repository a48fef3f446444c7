"""Generated files are written, or checked and reported stale with the command that fixes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.generated import write_or_check


def test_check_reports_a_stale_or_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    target = tmp_path / "out.md"

    missing = write_or_check(target, "new\n", command="make it", check=True)
    target.write_text("old\n")
    stale = write_or_check(target, "new\n", command="make it", check=True)
    current = write_or_check(target, "old\n", command="make it", check=True)

    assert (missing, stale, current) == (1, 1, 0)
    assert capsys.readouterr().err == f"{target} is stale: run `make it`\n" * 2
    assert target.read_text() == "old\n"


def test_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "out.md"

    assert write_or_check(target, "new\n", command="make it", check=False) == 0
    assert target.read_text() == "new\n"
