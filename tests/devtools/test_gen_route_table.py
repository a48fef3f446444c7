"""chalicelib/route_table.py is generated from app.py's routes and must not go stale."""

from __future__ import annotations

from app import app
from chalicelib.route_table import ROUTES
from devtools.gen_route_table import ROUTE_TABLE, render


def test_the_route_table_is_current() -> None:
    assert ROUTE_TABLE.read_text() == render(), (
        "chalicelib/route_table.py is stale: run `python -m devtools.gen_route_table`"
    )


def test_the_table_lists_every_route_and_method_of_the_app() -> None:
    assert {path: set(methods) for path, methods in ROUTES.items()} == {
        path: set(methods) for path, methods in app.routes.items()
    }
