"""API keys: what verifying a key and guarding a request cost.

1. Verification from the database (hash, one indexed lookup, the rules) against a bare
   `SELECT 1` on the same connection. Target: p50 ratio ≤ 1.5.
2. Verification from the in-container cache (well-formedness, hash, two dict lookups, the
   rules). Target: p50 ≤ 20 µs.
3. An authenticated request through chalice.test.Client with and without the key middleware
   (status check, IP allow-list, rate limit, audit row), with the database round trips of
   each counted from libpq's protocol trace. Target: ≤ 1.5× and at most one extra round trip.
4. The database work of refusing a well-formed key that matches no key: as it was (one audit
   row per attempt with a synchronous commit) and now (an upsert into the minute's row with a
   relaxed commit), after the same two lookups, with the rows each adds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench.common import fmt_ms, fmt_us, p50, scratch_database, timings
from chalicelib import container, db
from chalicelib.keys import access, repository, service, tokens
from chalicelib.keys.middleware import enforce_key_policy
from devtools.roundtrips import counting_round_trips

OTHER_KEYS = 2_000
REPEAT = 2000
REQUEST_REPEAT = 400


class _OneConnection:
    """The app's connection source, pinned to one autocommit connection so that its round
    trips can be traced (a warm Lambda container reuses one connection the same way)."""

    def __init__(self, conn: db.Connection) -> None:
        self._conn = conn

    @contextmanager
    def connection(self) -> Iterator[db.Connection]:
        yield self._conn


def _alternating(
    first: Callable[[], object], second: Callable[[], object], *, repeat: int
) -> tuple[list[float], list[float]]:
    """Time both call by call, alternating, so that machine noise hits them alike."""
    for _ in range(10):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        a += timings(first, repeat=1, warmup=0)
        b += timings(second, repeat=1, warmup=0)
    return a, b


def _verification(conn: db.Connection, raw_key: str) -> list[str]:
    prefix = tokens.display_prefix(raw_key)

    def select_one() -> None:
        conn.execute("SELECT 1").fetchone()

    def verify_from_database() -> None:
        assert tokens.is_well_formed(raw_key)
        status = repository.get_status_by_hash(conn, tokens.hash_key(raw_key))
        assert status is not None
        which = access.credential_for(status, prefix)
        assert access.refusal_reason(status, which, access.utc_now()) is None

    statuses = container.current.key_statuses
    statuses.clear()
    statuses.remember(0, None)  # a non-empty cache, as in a warm container
    with db.connection() as conn_from_source:
        status = repository.get_status_by_hash(conn_from_source, tokens.hash_key(raw_key))
    assert status is not None
    statuses.remember(status.id, status, key_hash=tokens.hash_key(raw_key))

    def verify_from_cache() -> None:
        assert tokens.is_well_formed(raw_key)
        found, credential = access.cached_credential(tokens.hash_key(raw_key), prefix)
        assert found
        assert credential is not None
        assert access.refusal_reason(credential.status, credential.which, access.utc_now()) is None

    baseline, from_database = _alternating(select_one, verify_from_database, repeat=REPEAT)
    from_cache = timings(verify_from_cache, repeat=REPEAT * 5)
    ratio = p50(from_database) / p50(baseline)
    explained = conn.execute(
        "EXPLAIN (COSTS OFF) " + repository.SELECT_STATUS_BY_HASH.strip(),
        {"key_hash": tokens.hash_key(raw_key)},
    ).fetchall()
    # The plan shows the hash it looked up; the report does not need it.
    plan = "\n".join(re.sub(r"'\\x[0-9a-f]+'", "'…'", row[0]) for row in explained)
    return [
        "### Key verification",
        "",
        f"{OTHER_KEYS + 1:,} keys in `api_keys`; p50 of {REPEAT} calls each, same connection.",
        "",
        "| what | p50 |",
        "|---|---|",
        f"| `SELECT 1` (baseline) | {fmt_us(p50(baseline))} |",
        f"| verify from the database (hash, lookup, rules) | {fmt_us(p50(from_database))} |",
        f"| ratio | **{ratio:.2f}×** (target ≤ 1.5×) |",
        f"| verify from the in-container cache | **{fmt_us(p50(from_cache))}** (target ≤ 20 µs) |",
        "",
        "The lookup's plan:",
        "",
        "```",
        plan,
        "```",
    ]


def _requests(conn: db.Connection, url: str) -> list[str]:
    from chalice.test import Client

    from app import app

    admin = service.create_key(conn, name="bench-admin", scopes=["read", "admin"])
    limited = service.create_key(
        conn, name="bench-limited", scopes=["read", "admin"], rate_limit_per_minute=10**6
    )
    with_middleware = list(app.middleware_handlers)
    without_middleware = [entry for entry in with_middleware if entry[0] is not enforce_key_policy]
    results: dict[str, dict[str, float]] = {}
    with Client(app, stage_name="local") as client:
        for label, created in (("no rate limit", admin), ("with a rate limit", limited)):
            path = f"/api/v1/admin/api-keys/{created.key.id}/audit?limit=1"
            headers = {"Authorization": f"Bearer {created.raw_key}"}

            def request(path: str = path, headers: dict[str, str] = headers) -> None:
                response = client.http.get(path, headers=headers)
                assert response.status_code == 200, response.body

            def use(handlers: list[Any]) -> Callable[[], None]:
                def run() -> None:
                    app.middleware_handlers = handlers
                    request()

                return run

            try:
                use(with_middleware)()  # warm: schema check, authorizer and status caches
                use(without_middleware)()
                without, with_ = _alternating(
                    use(without_middleware), use(with_middleware), repeat=REQUEST_REPEAT
                )
                app.middleware_handlers = without_middleware
                with counting_round_trips(conn) as bare_trips:
                    request()
                app.middleware_handlers = with_middleware
                with counting_round_trips(conn) as guarded_trips:
                    request()
            finally:
                app.middleware_handlers = with_middleware
            results[label] = {
                "without": p50(without),
                "with": p50(with_),
                "bare_trips": bare_trips.count,
                "guarded_trips": guarded_trips.count,
            }
    lines = [
        "### An authenticated request, with and without the key middleware",
        "",
        "`GET /api/v1/admin/api-keys/{id}/audit?limit=1` through `chalice.test.Client` "
        f"(authorizer and status caches warm); p50 of {REQUEST_REPEAT} requests each, "
        "alternating; round trips counted from libpq's protocol trace.",
        "",
        "| key | without | with | ratio | round trips without → with |",
        "|---|---|---|---|---|",
    ]
    for label, numbers in results.items():
        lines.append(
            f"| {label} | {fmt_ms(numbers['without'])} | {fmt_ms(numbers['with'])} | "
            f"**{numbers['with'] / numbers['without']:.2f}×** | "
            f"{numbers['bare_trips']:.0f} → {numbers['guarded_trips']:.0f} "
            f"(+{numbers['guarded_trips'] - numbers['bare_trips']:.0f}; target ≤ +1) |"
        )
    lines += [
        "",
        "A cold status cache (once per key per `AUTH_CACHE_TTL_SECONDS` per container) adds one "
        "more round trip: the status lookup by id.",
    ]
    return lines


REFUSALS = 2000


def _refusals(conn: db.Connection) -> list[str]:
    made_up = [tokens.generate_key() for _ in range(REFUSALS * 2 + 100)]
    keys = iter(made_up)

    def audit_rows() -> int:
        row = conn.execute("SELECT count(*) FROM api_key_audit").fetchone()
        assert row is not None
        return int(row[0])

    def before() -> None:
        raw = next(keys)
        assert repository.get_status_by_hash(conn, tokens.hash_key(raw)) is None
        # As it was: a row per attempt, committed with a WAL flush.
        repository.insert_audit_event(
            conn,
            event="auth_failed",
            key_prefix=tokens.display_prefix(raw),
            reason=access.REASON_UNKNOWN,
            method="GET",
            path="/api/v1/symbols",
            status_code=401,
        )

    def after() -> None:
        raw = next(keys)
        assert repository.get_status_by_hash(conn, tokens.hash_key(raw)) is None
        repository.record_unknown_key_refusal(
            conn,
            key_prefix=tokens.display_prefix(raw),
            reason=access.REASON_UNKNOWN,
            method="GET",
            path="/api/v1/symbols",
            prefixes_per_minute=access.REFUSAL_PREFIXES_PER_MINUTE,
        )

    start = audit_rows()
    old, new = _alternating(before, after, repeat=REFUSALS)
    added = audit_rows() - start
    old_rows = REFUSALS + 10  # one per attempt, the warm-up's included
    with counting_round_trips(conn) as old_trips:
        before()
    with counting_round_trips(conn) as new_trips:
        after()
    return [
        "### Refusing a well-formed key that matches no key",
        "",
        f"The database work of one refusal; p50 of {REFUSALS} calls each, alternating, on one "
        "autocommit connection; made-up keys, each with its own display prefix.",
        "",
        f"| | p50 | round trips | audit rows added by {REFUSALS + 10:,} refusals |",
        "|---|---|---|---|",
        f"| before: a row per attempt, synchronous commit | {fmt_us(p50(old))} | "
        f"{old_trips.count} | {old_rows:,} |",
        f"| now: the minute's row upserted, relaxed commit | **{fmt_us(p50(new))}** | "
        f"{new_trips.count} | {added - old_rows:,} |",
    ]


def run() -> str:
    with scratch_database() as url:
        previous_url = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        container.reset()
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                with conn.transaction():
                    for number in range(OTHER_KEYS):
                        service.create_key(conn, name=f"bench-key-{number}", scopes=["read"])
                    created = service.create_key(conn, name="bench-subject", scopes=["read"])
                conn.execute("ANALYZE api_keys")
                db.set_database(_OneConnection(conn))
                lines = _verification(conn, created.raw_key)
                lines += [""] + _requests(conn, url)
                lines += [""] + _refusals(conn)
        finally:
            container.reset()
            if previous_url is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = previous_url
            container.reset()
    return "\n".join(["## API keys", "", *lines])
