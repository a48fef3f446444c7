"""Files generated from the code (docs/CLI.md, docs/API.md, chalicelib/route_table.py): each
generator writes its file, or with --check fails when the file is stale (tests and CI)."""

from __future__ import annotations

import sys
from pathlib import Path

from chalicelib.config import PROJECT_ROOT


def write_or_check(path: Path, text: str, *, command: str, check: bool) -> int:
    """Write `text` to `path`, or with `check` only compare: exit status 1 when stale."""
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{shown} is stale: run `{command}`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0
