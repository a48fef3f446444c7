"""A flood of made-up keys: every one is refused, and the audit log grows by the minute, not by
the request (a PostgreSQL of the test's own, a real `chalice local`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from chalicelib.keys import access, tokens
from tests.factories import make_key
from tests.faults.servers import AppServer, FaultyPostgres, call

UNKNOWN_KEYS = 2_000
WORKERS = 8


def test_two_thousand_unknown_well_formed_keys_are_refused_in_a_few_rows(
    postgres: FaultyPostgres, app_server: Callable[..., AppServer]
):
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        revoked = make_key(conn, name="revoked-one")
        conn.execute("UPDATE api_keys SET active = false WHERE id = %s", (revoked.key.id,))
        rows_before = conn.execute("SELECT count(*) FROM api_key_audit").fetchone()
    made_up = [tokens.generate_key() for _ in range(UNKNOWN_KEYS)]
    assert all(tokens.is_well_formed(key) for key in made_up)
    assert len({tokens.display_prefix(key) for key in made_up}) > access.REFUSAL_PREFIXES_PER_MINUTE

    server = app_server()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        answers = list(
            pool.map(
                lambda key: call(f"{server.url}/api/v1/symbols", key=key, timeout=30),
                made_up,
            )
        )
    # A known key that is refused still gets a row of its own, every time.
    known = [call(f"{server.url}/api/v1/symbols", key=revoked.raw_key) for _ in range(3)]

    assert Counter(answer.status for answer in answers) == Counter({401: UNKNOWN_KEYS})
    assert [answer.status for answer in known] == [401, 401, 401]
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        minutes, rows, attempts, overflow = conn.execute(
            "SELECT count(DISTINCT aggregate_minute), count(*), sum(attempts),"
            " count(*) FILTER (WHERE key_prefix IS NULL)"
            " FROM api_key_audit WHERE aggregate_minute IS NOT NULL"
        ).fetchone()  # type: ignore[misc]
        known_rows = conn.execute(
            "SELECT reason, attempts FROM api_key_audit"
            " WHERE key_id = %s AND event = 'auth_failed'",
            (revoked.key.id,),
        ).fetchall()
        rows_after = conn.execute("SELECT count(*) FROM api_key_audit").fetchone()

    assert attempts == UNKNOWN_KEYS  # every attempt counted, none lost
    assert 1 <= minutes <= 2  # the flood takes well under a minute here
    # Per minute: the recorded prefixes (the cap, passed at most by the requests in flight when
    # it was reached) and one row for the rest.
    assert rows <= minutes * (access.REFUSAL_PREFIXES_PER_MINUTE + WORKERS + 1)
    assert overflow == minutes
    assert known_rows == [("revoked", 1)] * 3
    assert rows_before is not None
    assert rows_after is not None
    assert rows_after[0] - rows_before[0] == rows + 3
