"""API keys under a real `chalice local` process: the same answers as under the test client,
and correct under concurrency (data is committed: the server has its own connections)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from chalicelib.keys import tokens
from tests.factories import make_admin_key, make_key

pytestmark = pytest.mark.committed

KEYS = "/api/v1/admin/api-keys"


class Client:
    """One keep-alive connection to the local server."""

    def __init__(self, host: str, port: int) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.connection.connect()

    def request(
        self, method: str, path: str, *, key: str | None = None, body: Any = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()


class Server:
    """Clients of the local server. Connections are opened one at a time, before any load:
    the server's listen backlog is small, and a burst of connects gets some of them reset."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.opened: list[Client] = []

    def clients(self, count: int) -> list[Client]:
        new = [Client(self.host, self.port) for _ in range(count)]
        self.opened.extend(new)
        return new

    def request(
        self, method: str, path: str, *, key: str | None = None, body: Any = None
    ) -> tuple[int, dict[str, str], bytes]:
        if not self.opened:
            self.clients(1)
        return self.opened[0].request(method, path, key=key, body=body)

    def close(self) -> None:
        for client in self.opened:
            client.connection.close()


@pytest.fixture
def server(chalice_local: str, committed_db: str) -> Iterator[Server]:
    opened = Server(chalice_local)
    yield opened
    opened.close()


@pytest.fixture
def database(committed_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(committed_db, autocommit=True) as conn:
        yield conn


def test_the_local_server_answers_like_the_test_client(server, database):
    from chalice.test import Client

    from app import app

    admin = make_admin_key(database).raw_key
    reader = make_key(database, scopes=["read"]).raw_key
    cases = {
        "no key": ("/api/v1/symbols", None),
        "malformed key": ("/api/v1/symbols", "mdw_nope"),
        "unknown key": ("/api/v1/symbols", tokens.generate_key()),
        "read key, read route": ("/api/v1/symbols", reader),
        "read key, admin route": (KEYS, reader),
        "admin key, admin route": (KEYS, admin),
    }

    def through_the_test_client(path: str, key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = test_client.http.get(path, headers=headers)
        return response.status_code, json.loads(response.body)

    def through_the_server(path: str, key: str | None) -> tuple[int, Any]:
        status, _, body = server.request("GET", path, key=key)
        return status, json.loads(body)

    with Client(app, stage_name="local") as test_client:
        by_client = {name: through_the_test_client(*case) for name, case in cases.items()}
    by_server = {name: through_the_server(*case) for name, case in cases.items()}

    assert {name: status for name, (status, _) in by_server.items()} == {
        "no key": 401,
        "malformed key": 401,
        "unknown key": 401,
        "read key, read route": 200,
        "read key, admin route": 403,
        "admin key, admin route": 200,
    }
    # The key list carries usage counters that move with these very requests: compare names.
    for answers in (by_server, by_client):
        status, listing = answers.pop("admin key, admin route")
        answers["admin key, admin route"] = (status, sorted(k["name"] for k in listing["items"]))
    assert by_server == by_client


def test_the_local_server_refuses_a_revoked_key(server, database):
    admin = make_admin_key(database).raw_key
    created = make_key(database)
    assert server.request("GET", "/api/v1/symbols", key=created.raw_key)[0] == 200

    status, _, _ = server.request(
        "PUT", f"{KEYS}/{created.key.id}", key=admin, body={"active": False}
    )

    assert status == 200
    # Revoked through this server: its own caches were cleared at once.
    assert server.request("GET", "/api/v1/symbols", key=created.raw_key)[0] == 401


def test_twenty_concurrent_creates_with_one_name_make_exactly_one_key(server, database):
    admin = make_admin_key(database).raw_key
    clients = server.clients(20)
    start = threading.Barrier(20)

    def create(client: Client) -> int:
        start.wait()
        status, _, _ = client.request(
            "POST", KEYS, key=admin, body={"name": "contested", "scopes": ["read"]}
        )
        return status

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(pool.map(create, clients))

    assert statuses == {201: 1, 409: 19}
    rows = database.execute("SELECT count(*) FROM api_keys WHERE name = 'contested'").fetchone()
    assert rows == (1,)


# Fifty threads released together, each on its own keep-alive connection, keep fifty requests in
# flight from the first one on. A bug in what the requests share (key cache, rate limiter,
# connection pool, audit writes) needs that overlap, not volume: 20 requests a thread show it as
# 200 did, in a tenth of the requests.
THREADS = 50
REQUESTS_PER_THREAD = 20


def test_fifty_threads_of_requests_with_one_key_are_all_served_and_audited(server, database):
    created = make_admin_key(database)
    path = f"{KEYS}/{created.key.id}/audit?limit=1"
    clients = server.clients(THREADS)
    start = threading.Barrier(THREADS, timeout=30)
    started = time.perf_counter()

    def hammer(client: Client) -> Counter[int]:
        statuses: Counter[int] = Counter()
        start.wait()
        for _ in range(REQUESTS_PER_THREAD):
            statuses[client.request("GET", path, key=created.raw_key)[0]] += 1
        return statuses

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        totals = sum(pool.map(hammer, clients), Counter())
    elapsed = time.perf_counter() - started

    expected = THREADS * REQUESTS_PER_THREAD
    assert totals == {200: expected}
    audited = database.execute(
        "SELECT count(*) FROM api_key_audit WHERE key_id = %s AND event = 'request'",
        (created.key.id,),
    ).fetchone()
    assert audited == (expected,)
    print(f"\n{expected} requests in {elapsed:.1f} s ({expected / elapsed:,.0f}/s)")
