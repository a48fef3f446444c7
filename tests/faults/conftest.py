"""The app under database faults: a PostgreSQL of the test's own (tests/faults/servers.py) and a
real `chalice local` process pointed at it, with short time bounds so each test is quick."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from chalicelib.route_table import ROUTES
from tests.factories import make_admin_key, make_bars, make_key, make_symbol
from tests.faults.servers import AppServer, FaultyPostgres

CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 1500
# The documented bound of a request against a database that does not answer.
BOUND_SECONDS = CONNECT_TIMEOUT_SECONDS + STATEMENT_TIMEOUT_MS / 1000 + 1

FAULT_SETTINGS = {
    "DATABASE_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
    "DATABASE_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
    # Key statuses stay cached, so the views (this suite's subject) are what meets the fault.
    "AUTH_CACHE_TTL_SECONDS": "300",
    "SYMBOL_CHECK_ON_ADD": "false",
    "POLYGON_API_KEY": "unused-in-these-tests",
    "POLYGON_BASE_URL": "http://127.0.0.1:9",
}


class Seed(msgspec.Struct, frozen=True):
    admin_key: str
    spare_key: str  # a read key never presented before the fault: the authorizer must look it up
    victim_key_id: int  # the key the admin routes change


@pytest.fixture
def postgres() -> Iterator[FaultyPostgres]:
    server = FaultyPostgres().start()
    try:
        server.create_app_database()
        yield server
    finally:
        server.remove()


@pytest.fixture
def seed(postgres: FaultyPostgres) -> Seed:
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        admin = make_admin_key(conn, name="fault-admin")
        spare = make_key(conn, name="fault-spare")
        victim = make_key(conn, name="fault-victim")
        make_symbol(conn, "AAPL", timeframes=["1d"])
        start = datetime(2025, 1, 6, tzinfo=UTC)
        make_bars(conn, "AAPL", [start + timedelta(days=i) for i in range(5)])
    return Seed(admin.raw_key, spare.raw_key, victim.key.id)


@pytest.fixture
def app_server(postgres: FaultyPostgres, tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """Start `chalice local` on the test's database: `app_server(**extra_settings)`."""
    started: list[AppServer] = []

    def start(database_url: str | None = None, **settings: str) -> AppServer:
        env = {
            **FAULT_SETTINGS,
            "DATABASE_URL": database_url or postgres.app_url(),
            **settings,
        }
        server = AppServer(env, tmp_path / f"chalice-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# Every route with concrete values, and a valid body where it takes one.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/admin/api-keys"): {"name": "made-during-a-fault", "scopes": ["read"]},
    ("PUT", "/api/v1/admin/api-keys/{key_id}"): {"active": True},
    ("POST", "/api/v1/admin/api-keys/{key_id}/rotate"): {"grace_seconds": 0},
    ("POST", "/api/v1/admin/symbols"): {"symbol": "MSFT", "asset_class": "stock"},
    ("PUT", "/api/v1/admin/symbols/{symbol}"): {"active": True},
}
QUERIES = {
    "/api/v1/historical/{symbol}": "?timeframe=1d&start=2025-01-01&end=2025-01-31",
    "/api/v1/bars": "?symbols=AAPL&timeframe=1d&start=2025-01-01&end=2025-01-31",
    "/api/v1/latest": "?symbols=AAPL",
}
PATH_VALUES = {
    "{symbol}": "AAPL",
    "{ticker}": "AAPL",
    "{multiplier}": "1",
    "{timespan}": "day",
    "{from}": "2025-01-01",
    "{to}": "2025-01-31",
    "{date}": "2025-01-02",
}
# The pages' files: served whatever the database does.
FILES = {"/static/{name}": "console.js", "/static/vendor/{name}": "lightweight-charts.js"}


class RouteCall(msgspec.Struct, frozen=True):
    method: str
    route: str
    path: str
    body: Any = None


def every_route(seed: Seed) -> list[RouteCall]:
    calls = []
    for route, methods in sorted(ROUTES.items()):
        path = route.replace("{key_id}", str(seed.victim_key_id))
        for parameter, value in PATH_VALUES.items():
            path = path.replace(parameter, value)
        path = path.replace("{name}", FILES.get(route, ""))
        path += QUERIES.get(route, "")
        for method in methods:
            calls.append(RouteCall(method, route, path, BODIES.get((method, route))))
    return calls


def reads(seed: Seed) -> list[RouteCall]:
    return [c for c in every_route(seed) if c.method == "GET"]
