"""A frozen database and a stopped one: every route answers 503 `database_unavailable` within
the documented bound, and the same server process serves again once the database is back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from chalicelib import db
from chalicelib.config import Settings
from chalicelib.pages.routes import PAGE_ROUTES
from tests.faults.conftest import (
    BOUND_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    FAULT_SETTINGS,
    STATEMENT_TIMEOUT_MS,
    RouteCall,
    Seed,
    every_route,
    reads,
)
from tests.faults.servers import Answer, AppServer, FaultyPostgres, call

UNAVAILABLE = {
    "error": {
        "code": "database_unavailable",
        "message": "the database is unavailable; retry shortly",
    }
}
NO_ANSWER = {
    "error": {
        "code": "database_unavailable",
        "message": "the database did not answer in time; retry shortly",
    }
}


def send(app: AppServer, route_call: RouteCall, key: str | None) -> Answer:
    return call(
        app.url + route_call.path,
        method=route_call.method,
        key=None if route_call.route in ("/health", "/openapi.json") else key,
        body=route_call.body,
    )


# `chalice local` listens with socketserver's backlog of 5: more connections at once are
# refused or retried by TCP a second later, which would measure the server, not the app.
CONCURRENT_REQUESTS = 4


def send_all(app: AppServer, calls: list[RouteCall], key: str) -> list[Answer]:
    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        return list(pool.map(lambda c: send(app, c, key), calls))


def warm_up(app: AppServer, seed: Seed) -> None:
    """Every read answers 200: the key's status is cached and the pool holds connections."""
    answers = send_all(app, reads(seed), seed.admin_key)
    assert [(a.status, c.route) for a, c in zip(answers, reads(seed), strict=True)] == [
        (200, c.route) for c in reads(seed)
    ]


def wait_until_served(app: AppServer, seed: Seed, *, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if call(app.url + "/api/v1/symbols", key=seed.admin_key).status == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not served again within {within} s")


STATIC_ROUTES = ("/openapi.json", *PAGE_ROUTES)


def assert_unavailable_within_bound(
    postgres: FaultyPostgres, calls: list[RouteCall], answers: list[Answer]
) -> None:
    for route_call, answer in zip(calls, answers, strict=True):
        where = f"{route_call.method} {route_call.route}"
        if route_call.route in STATIC_ROUTES:  # served without the database
            assert answer.status == 200, where
            continue
        assert answer.status == 503, (where, answer.status, answer.raw)
        assert answer.elapsed <= BOUND_SECONDS, (where, answer.elapsed)
        assert answer.headers["Retry-After"] == "1", where
        body = answer.body
        if route_call.route == "/health":
            assert body["error"]["code"] == "database_unavailable", where
            assert body["error"]["details"]["database"] == "unreachable", where
            body = {"error": {k: v for k, v in body["error"].items() if k != "details"}}
        if route_call.route.startswith(("/v2/", "/v3/")):
            # The Polygon-compatible routes answer in Polygon's error shape, same words.
            assert body["status"] == "ERROR", where
            assert set(body) == {"status", "request_id", "error"}, where
            body = {"error": {"code": "database_unavailable", "message": body["error"]}}
        assert body in (UNAVAILABLE, NO_ANSWER), (where, body)
        for secret in ("127.0.0.1", str(postgres.port), "app", "mdw", "Pa55"):
            assert secret not in answer.raw.decode(), (where, secret)


def test_a_frozen_database_answers_503_within_the_bound_then_serves_again(
    postgres, seed, app_server
):
    app = app_server()
    warm_up(app, seed)
    calls = every_route(seed)

    postgres.freeze()
    try:
        answers = send_all(app, calls, seed.admin_key)
        time.sleep(1.1)  # past the second in which the container refuses without trying
        # A key the container has never seen: the authorizer itself must ask the database.
        authorizer = call(app.url + "/api/v1/symbols", key=seed.spare_key)
    finally:
        postgres.thaw()

    assert_unavailable_within_bound(postgres, calls, answers)
    # The first requests wait out the unanswered statement (1.5 + 1 s); their audit writes, and
    # the requests after them, are refused at once: no request adds a connect timeout (2 s).
    slowest = max(answer.elapsed for answer in answers)
    assert slowest < STATEMENT_TIMEOUT_MS / 1000 + 1 + CONNECT_TIMEOUT_SECONDS / 2
    # The authorizer gives up within the same bound, with the 503 API Gateway's
    # AUTHORIZER_FAILURE response gives in the cloud: never a 401 that blames the key.
    assert CONNECT_TIMEOUT_SECONDS * 0.9 <= authorizer.elapsed <= BOUND_SECONDS  # it did try
    assert authorizer.status == 503, authorizer.raw
    assert authorizer.body["error"]["code"] == "service_unavailable"
    # The same server process, without a restart, serves every read again.
    assert wait_until_served(app, seed, within=BOUND_SECONDS + 2) <= BOUND_SECONDS + 2
    warm_up(app, seed)
    assert app.process.poll() is None
    assert "Traceback" not in app.log_text()


def test_a_stopped_database_answers_503_at_once_and_a_restarted_one_is_used_again(
    postgres, seed, app_server
):
    app = app_server()
    warm_up(app, seed)
    calls = every_route(seed)

    postgres.stop()
    answers = send_all(app, calls, seed.admin_key)
    again = send_all(app, calls, seed.admin_key)  # the pool holds nothing that leads anywhere
    postgres.start()

    assert_unavailable_within_bound(postgres, calls, answers)
    assert_unavailable_within_bound(postgres, calls, again)
    # A refused connection is known at once: nothing waits for the connect timeout.
    assert max(a.elapsed for a in again) < CONNECT_TIMEOUT_SECONDS
    assert wait_until_served(app, seed, within=5) <= 5
    warm_up(app, seed)
    assert app.process.poll() is None
    assert "Traceback" not in app.log_text()


def test_a_command_gives_up_on_a_frozen_database_within_the_bound(postgres: FaultyPostgres):
    """The CLI's and the migration job's own connection: bounded like the pool's."""
    settings = Settings.from_env({"DATABASE_URL": postgres.app_url(), **FAULT_SETTINGS})
    with db.command_session(settings) as conn:
        conn.execute("SELECT 1")
        postgres.freeze()
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.OperationalError, match="no answer within 2.5 s"):
                conn.execute("SELECT 1")
        finally:
            elapsed = time.monotonic() - started
            postgres.thaw()

    assert STATEMENT_TIMEOUT_MS / 1000 <= elapsed <= BOUND_SECONDS
    with db.command_session(settings) as conn:  # the same server, thawed, answers again
        assert conn.execute("SELECT 1").fetchone() == (1,)
