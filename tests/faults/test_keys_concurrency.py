"""API keys under concurrency, against a PostgreSQL of the test's own (whose log shows any
deadlock, detected after 100 ms) and a real threaded `chalice local` (tests/faults/conftest.py):
listings beside changes and reads never deadlock or fail, and a burst on a rate-limited key
never gets more than the limit through one container."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.factories import make_admin_key, make_key
from tests.faults.servers import Answer, AppServer, FaultyPostgres, call

KEYS = "/api/v1/admin/api-keys"
# Each request has this long; the whole run is a fixed number of requests.
REQUEST_TIMEOUT = 30.0


def run_all(calls: list[Callable[[], Answer]], *, workers: int) -> list[Answer]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one) for one in calls]
        return [future.result(timeout=120) for future in futures]


def test_concurrent_listings_changes_and_reads_answer_without_errors_or_deadlocks(
    postgres: FaultyPostgres, app_server: Callable[..., AppServer]
):
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        admin = make_admin_key(conn, name="concurrency-admin").raw_key
        readers = [make_key(conn, name=f"reader-{n}").raw_key for n in range(6)]
        victims = [make_key(conn, name=f"victim-{n}").key.id for n in range(3)]
    server = app_server(AUTH_CACHE_TTL_SECONDS="1")
    # All along, request rows old enough to be folded keep arriving for every key, as in a
    # steady state (what listings used to fold, each into every key's row, in no fixed order).
    done = threading.Event()

    def settled_usage() -> None:
        with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
            while not done.is_set():
                conn.execute(
                    "INSERT INTO api_key_audit (key_id, occurred_at, event)"
                    " SELECT id, now() - interval '1 minute', 'request' FROM api_keys"
                )
                done.wait(0.01)

    usage = threading.Thread(target=settled_usage)
    usage.start()
    names = itertools.count()
    lock = threading.Lock()

    def read(n: int) -> Callable[[], Answer]:
        return lambda: call(
            f"{server.url}/api/v1/symbols", key=readers[n % 6], timeout=REQUEST_TIMEOUT
        )

    def listing(n: int) -> Callable[[], Answer]:
        path = KEYS if n % 2 else f"{KEYS}/{victims[n % 3]}"
        return lambda: call(server.url + path, key=admin, timeout=REQUEST_TIMEOUT)

    def change(n: int) -> Callable[[], Answer]:
        def put() -> Answer:
            with lock:
                suffix = next(names)
            body = {"name": f"victim-{n % 3}-{suffix}", "rate_limit_per_minute": 1000 + suffix}
            return call(
                f"{server.url}{KEYS}/{victims[n % 3]}",
                method="PUT",
                key=admin,
                body=body,
                timeout=REQUEST_TIMEOUT,
            )

        return put

    calls = []
    for n in range(600):
        calls += [read(n), listing(n)]
        if n % 3 == 0:
            calls.append(change(n))
    try:
        answers = run_all(calls, workers=12)
    finally:
        done.set()
        usage.join(timeout=10)

    statuses = Counter(answer.status for answer in answers)
    assert statuses == Counter({200: len(calls)}), [
        (a.status, a.raw[:200]) for a in answers if a.status != 200
    ][:5]
    log = postgres.log_text()
    assert "deadlock detected" not in log
    assert "could not serialize" not in log
    # Every answered request has its audit row: one each, no more.
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM api_key_audit WHERE event = 'request' AND method IS NOT NULL"
        ).fetchone()
    assert audited == (len(calls),)


def test_a_burst_on_a_rate_limited_key_gets_exactly_the_limit_through(
    postgres: FaultyPostgres, app_server: Callable[..., AppServer]
):
    limit = 20
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        created = make_key(conn, name="burst", rate_limit_per_minute=limit)
    server = app_server(AUTH_CACHE_TTL_SECONDS="60")
    # Warm the authorizer's and the middleware's caches with one request, so the burst races
    # on the limiter, not on the first lookup.
    first = call(f"{server.url}/api/v1/symbols", key=created.raw_key, timeout=REQUEST_TIMEOUT)
    start = threading.Barrier(20)

    def burst_call() -> Answer:
        start.wait(timeout=30)
        return call(f"{server.url}/api/v1/symbols", key=created.raw_key, timeout=REQUEST_TIMEOUT)

    answers = run_all([burst_call] * 60, workers=20)

    statuses = Counter(answer.status for answer in answers)
    assert first.status == 200
    assert statuses == Counter({200: limit - 1, 429: 60 - (limit - 1)})
    refused = [answer for answer in answers if answer.status == 429]
    assert {answer.body["error"]["code"] for answer in refused} == {"rate_limited"}
    assert all(1 <= int(answer.headers["Retry-After"]) <= 60 for answer in refused)
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(reason, 'served'), count(*) FROM api_key_audit"
            " WHERE key_id = %s AND event = 'request' GROUP BY 1 ORDER BY 1",
            (created.key.id,),
        ).fetchall()
    assert rows == [("rate_limited", 60 - (limit - 1)), ("served", limit)]
