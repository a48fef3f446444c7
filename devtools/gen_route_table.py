"""Write chalicelib/route_table.py from the application's own route table.

    python -m devtools.gen_route_table          # rewrite chalicelib/route_table.py
    python -m devtools.gen_route_table --check  # exit 1 when it is stale (tests)

The authorizer runs in a Lambda container of its own that imports only its handler module, never
app.py, so it cannot ask the application for its routes; it reads this generated table instead.
"""

from __future__ import annotations

import argparse
import sys

from chalicelib.config import PROJECT_ROOT
from devtools.generated import write_or_check

ROUTE_TABLE = PROJECT_ROOT / "chalicelib" / "route_table.py"
HEADER = '''"""Every API route and its methods, generated from app.py by
`python -m devtools.gen_route_table`; a test fails when it is stale.

The authorizer's Lambda container imports only the authorizer, never app.py (where the routes are
declared), so its policies are built from this table.
"""

from __future__ import annotations

ROUTES: dict[str, tuple[str, ...]] = {
'''


def render() -> str:
    from app import app

    lines = [HEADER]
    for path, methods in sorted(app.routes.items()):
        listed = ", ".join(f'"{method}"' for method in sorted(methods))
        if len(methods) == 1:
            listed += ","
        lines.append(f'    "{path}": ({listed}),\n')
    lines.append("}\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.gen_route_table", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the table is stale")
    args = parser.parse_args(argv)
    return write_or_check(
        ROUTE_TABLE, render(), command="python -m devtools.gen_route_table", check=args.check
    )


if __name__ == "__main__":
    sys.exit(main())
