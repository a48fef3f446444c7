"""The API key SQL: lookups by hash, the rate window, usage folding, audit paging and the
retention helpers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from chalicelib import db
from chalicelib.errors import Conflict
from chalicelib.keys import repository, tokens
from chalicelib.keys.models import RequestRecord
from tests.factories import make_key
from tests.keys.helpers import audit_rows, clear_of_a_minute_boundary, refusal_rows


def request_record(key_id: int, *, status_code: int = 200, reason: str | None = None):
    return RequestRecord(
        key_id=key_id,
        key_prefix="mdw_abcdefgh",
        method="GET",
        route="/api/v1/symbols",
        path="/api/v1/symbols",
        status_code=status_code,
        latency_ms=3,
        source_ip="192.0.2.1",
        request_id="r-1",
        reason=reason,
    )


def age_audit_rows(conn: db.Connection, key_id: int, seconds: int) -> None:
    conn.execute(
        "UPDATE api_key_audit SET occurred_at = occurred_at - make_interval(secs => %s)"
        " WHERE key_id = %s",
        (seconds, key_id),
    )


def insert_named(conn, name: str):
    raw = tokens.generate_key()
    return repository.insert_key(
        conn,
        name=name,
        key_hash=tokens.hash_key(raw),
        key_prefix=tokens.display_prefix(raw),
        scopes=["read"],
    )


def test_insert_key_turns_a_duplicate_name_into_conflict_and_keeps_the_transaction(conn):
    # The repository takes any name as data (the service decides which names are allowed).
    insert_named(conn, "o'brien")

    with pytest.raises(Conflict, match='named "o\'brien" already exists'):
        insert_named(conn, "o'brien")

    assert repository.names_starting_with(conn, "o'") == ["o'brien"]


def test_status_by_hash_finds_the_current_and_the_previous_key(conn):
    created = make_key(conn)
    new_raw = tokens.generate_key()
    repository.rotate_key(
        conn,
        created.key.id,
        key_hash=tokens.hash_key(new_raw),
        key_prefix=tokens.display_prefix(new_raw),
        previous_expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )

    by_new = repository.get_status_by_hash(conn, tokens.hash_key(new_raw))
    by_old = repository.get_status_by_hash(conn, tokens.hash_key(created.raw_key))
    by_unknown = repository.get_status_by_hash(conn, tokens.hash_key(tokens.generate_key()))

    assert by_new is not None
    assert by_new == by_old
    assert by_new.key_prefix == new_raw[:12]
    assert by_new.previous_key_prefix == created.raw_key[:12]
    assert by_unknown is None


def test_rotating_without_grace_forgets_the_old_hash(conn):
    created = make_key(conn)
    new_raw = tokens.generate_key()

    rotated = repository.rotate_key(
        conn,
        created.key.id,
        key_hash=tokens.hash_key(new_raw),
        key_prefix=new_raw[:12],
        previous_expires_at=None,
    )

    assert rotated is not None
    assert (rotated.previous_key_prefix, rotated.previous_key_expires_at) == (None, None)
    assert repository.get_status_by_hash(conn, tokens.hash_key(created.raw_key)) is None


def test_shortening_the_expiry_also_shortens_the_grace_of_the_previous_key(conn):
    created = make_key(conn)
    grace_end = datetime.now(UTC) + timedelta(hours=2)
    repository.rotate_key(
        conn,
        created.key.id,
        key_hash=b"\x02" * 32,
        key_prefix="mdw_22222222",
        previous_expires_at=grace_end,
    )
    new_expiry = datetime.now(UTC) + timedelta(hours=1)

    updated = repository.update_key(
        conn,
        created.key.id,
        name=created.key.name,
        scopes=["read"],
        active=True,
        expires_at=new_expiry,
        allowed_cidrs=[],
        rate_limit_per_minute=None,
    )

    assert updated is not None
    assert updated.previous_key_expires_at == new_expiry


def test_the_rate_window_counts_served_requests_of_the_last_minute(conn):
    key = make_key(conn).key
    repository.record_request(conn, request_record(key.id))
    repository.record_request(conn, request_record(key.id, status_code=429, reason="rate_limited"))
    repository.record_request(conn, request_record(key.id))
    repository.record_request(conn, request_record(key.id))
    age_audit_rows(conn, key.id, 61)  # out of the window
    repository.record_request(conn, request_record(key.id, status_code=500))

    window = repository.record_request_in_window(
        conn, request_record(key.id), rate_limit_per_minute=5
    )

    assert window.used == 2  # the 500 and this one; the old rows left the window
    assert 59 < window.seconds_until_slot <= 60


def test_the_rate_window_reports_when_the_oldest_counted_request_leaves(conn):
    key = make_key(conn).key
    repository.record_request(conn, request_record(key.id))
    age_audit_rows(conn, key.id, 45)

    window = repository.record_request_in_window(
        conn, request_record(key.id), rate_limit_per_minute=2
    )

    assert window.used == 2
    assert 14 < window.seconds_until_slot <= 15


def stored_usage(conn: Any, key_id: int) -> tuple[int, Any, int]:
    """The counters as the archive job's fold left them in `api_keys`."""
    row = conn.execute(
        "SELECT request_count, last_used_at, usage_counted_through FROM api_keys WHERE id = %s",
        (key_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_reading_keys_counts_unfolded_requests_and_writes_nothing(conn):
    key = make_key(conn).key
    idle = make_key(conn).key
    for _ in range(3):
        repository.record_request(conn, request_record(key.id))
    repository.record_refusal(
        conn,
        key_id=key.id,
        key_prefix=key.key_prefix,
        reason="revoked",
        method="GET",
        route="/api/v1/symbols",
        path="/api/v1/symbols",
    )
    newest = conn.execute(
        "SELECT max(occurred_at) FROM api_key_audit WHERE key_id = %s AND event = 'request'",
        (key.id,),
    ).fetchone()
    before = conn.execute("SELECT xmin::text, * FROM api_keys ORDER BY id").fetchall()

    shown = repository.get_key(conn, key.id)
    listed = {k.id: k for k in repository.list_keys(conn)}

    assert shown is not None
    assert (shown.request_count, shown.last_used_at) == (3, newest[0] if newest else None)
    assert (listed[key.id].request_count, listed[key.id].last_used_at) == (3, shown.last_used_at)
    assert (listed[idle.id].request_count, listed[idle.id].last_used_at) == (0, None)
    # Not a row version changed: the read path took no lock and wrote nothing.
    assert conn.execute("SELECT xmin::text, * FROM api_keys ORDER BY id").fetchall() == before


def test_fold_usage_counts_settled_request_rows_once(conn):
    key = make_key(conn).key
    other = make_key(conn).key
    for _ in range(3):
        repository.record_request(conn, request_record(key.id))
    repository.record_request(conn, request_record(other.id))
    age_audit_rows(conn, key.id, 60)
    repository.record_request(conn, request_record(key.id))  # still settling

    changed = repository.fold_usage(conn, settle_seconds=5)
    again = repository.fold_usage(conn, settle_seconds=5)
    folded = stored_usage(conn, key.id)
    shown = repository.get_key(conn, key.id)

    assert (changed, again) == (1, 0)
    assert folded[0] == 3
    newest = conn.execute(
        "SELECT max(occurred_at) FROM api_key_audit WHERE key_id = %s"
        " AND occurred_at < clock_timestamp() - interval '30 seconds'",
        (key.id,),
    ).fetchone()
    assert newest is not None
    assert folded[1] == newest[0]
    # A read adds the row still settling to what was folded.
    assert shown is not None
    assert shown.request_count == 4
    assert repository.fold_usage(conn, key_id=key.id, settle_seconds=0) == 1
    assert stored_usage(conn, key.id)[0] == 4
    refolded = repository.get_key(conn, key.id)
    assert refolded is not None
    assert refolded.request_count == 4


def test_fold_usage_never_moves_past_a_row_that_is_not_settled(conn):
    key = make_key(conn).key
    repository.record_request(conn, request_record(key.id))  # id n: recent
    repository.record_request(conn, request_record(key.id))  # id n+1
    # Only the later row looks old, as when an earlier INSERT commits late.
    conn.execute(
        "UPDATE api_key_audit SET occurred_at = occurred_at - interval '1 minute'"
        " WHERE id = (SELECT max(id) FROM api_key_audit WHERE key_id = %s)",
        (key.id,),
    )

    repository.fold_usage(conn, key_id=key.id, settle_seconds=5)

    assert stored_usage(conn, key.id)[0] == 0


def test_a_concurrent_fold_of_the_same_key_does_not_count_twice(committed_db):
    database_url = committed_db
    with psycopg.connect(database_url, autocommit=True) as setup:
        key = make_key(setup).key
        for _ in range(5):
            repository.record_request(setup, request_record(key.id))
        age_audit_rows(setup, key.id, 60)

    with (
        psycopg.connect(database_url, autocommit=True) as first,
        psycopg.connect(database_url, autocommit=True) as second,
    ):
        with first.transaction():
            repository.fold_usage(first, key_id=key.id, settle_seconds=5)
            # `second` read the same counters and now waits for `first`'s row lock.
            second.execute("SET lock_timeout = '5s'")
            result: list[int] = []
            waiter = threading.Thread(
                target=lambda: result.append(
                    repository.fold_usage(second, key_id=key.id, settle_seconds=5)
                )
            )
            waiter.start()
            waiter.join(0.3)
        waiter.join(5)
        folded = stored_usage(first, key.id)

    assert result == [0]
    assert folded[0] == 5


def test_audit_page_filters_and_pages_below_a_cursor(conn):
    key = make_key(conn).key
    for status_code in (200, 404, 200):
        repository.record_request(conn, request_record(key.id, status_code=status_code))

    everything = repository.get_audit_page(conn, key.id, limit=10)
    ok_only = repository.get_audit_page(conn, key.id, limit=10, status=200)
    below = repository.get_audit_page(conn, key.id, limit=10, before_id=everything[1].id)

    assert [row.event for row in everything] == ["request", "request", "request", "created"]
    assert [row.status_code for row in ok_only] == [200, 200]
    assert [row.id for row in below] == [row.id for row in everything[2:]]
    assert everything[0].source_ip == "192.0.2.1"


def test_history_outlives_the_key(conn):
    key = make_key(conn).key
    repository.delete_key(conn, key.id)

    assert repository.get_key(conn, key.id) is None
    assert repository.key_has_history(conn, key.id) is True
    assert repository.key_has_history(conn, 10**12) is False


def test_retention_selects_old_rows_in_id_order_and_deletes_by_id_range(conn):
    key = make_key(conn).key
    for _ in range(4):
        repository.record_request(conn, request_record(key.id))
    age_audit_rows(conn, key.id, 100 * 86400)
    repository.record_request(conn, request_record(key.id))  # recent: stays
    cutoff = datetime.now(UTC) - timedelta(days=90)

    first_page = repository.select_audit_rows_before(conn, cutoff=cutoff, limit=3)
    second_page = repository.select_audit_rows_before(
        conn, cutoff=cutoff, after_id=first_page[-1].id, limit=3
    )
    ids = [row.id for row in first_page + second_page]
    deleted = repository.delete_audit_rows(
        conn, first_id=ids[0], last_id=ids[-1] + 1000, cutoff=cutoff
    )

    assert ids == sorted(ids)
    assert len(ids) == 5  # the 'created' row and four requests
    assert deleted == 5
    remaining = repository.get_audit_page(conn, key.id, limit=10)
    assert [row.event for row in remaining] == ["request"]


def refuse_unknown(conn: db.Connection, prefix: str, *, cap: int = 100, path: str = "/p") -> None:
    repository.record_unknown_key_refusal(
        conn,
        key_prefix=prefix,
        reason="unknown_key",
        method="GET",
        path=path,
        prefixes_per_minute=cap,
    )


def test_unknown_key_refusals_are_counted_per_minute_prefix_and_reason(conn):
    clear_of_a_minute_boundary()
    for path in ("/first", "/second", "/third"):
        refuse_unknown(conn, "mdw_AAAAAAAA", cap=2, path=path)
    refuse_unknown(conn, "mdw_BBBBBBBB", cap=2)
    # The minute has its 2 prefixes: new ones are counted together, without prefix or source.
    refuse_unknown(conn, "mdw_CCCCCCCC", cap=2)
    refuse_unknown(conn, "mdw_DDDDDDDD", cap=2)
    refuse_unknown(conn, "mdw_AAAAAAAA", cap=2)  # a prefix with its own row keeps counting there
    minutes = conn.execute(
        "SELECT DISTINCT aggregate_minute = date_trunc('minute', occurred_at, 'UTC')"
        " FROM api_key_audit WHERE aggregate_minute IS NOT NULL"
    ).fetchall()

    assert refusal_rows(conn) == [
        ("mdw_AAAAAAAA", "unknown_key", None, 4, "GET", "/first"),
        ("mdw_BBBBBBBB", "unknown_key", None, 1, "GET", "/p"),
        (None, "unknown_key", None, 2, "GET", "/p"),
    ]
    assert minutes == [(True,)]
    assert audit_rows(conn) == [
        {
            "id": row["id"],
            "key_id": None,
            "event": "auth_failed",
            "method": "GET",
            "route": None,
            "path": row["path"],
            "status_code": 401,
            "latency_ms": None,
            "source_ip": None,
            "request_id": None,
            "key_prefix": row["key_prefix"],
            "reason": "unknown_key",
        }
        for row in audit_rows(conn)
    ]


def test_known_key_refusals_keep_a_row_each(conn):
    key = make_key(conn).key
    for _ in range(3):
        repository.record_refusal(
            conn,
            key_id=key.id,
            key_prefix=key.key_prefix,
            reason="revoked",
            method="GET",
            route="/api/v1/symbols",
            path="/api/v1/symbols",
        )

    rows = audit_rows(conn, key.id)
    assert [(r["event"], r["reason"], r["status_code"]) for r in rows[-3:]] == [
        ("auth_failed", "revoked", 401)
    ] * 3
    assert refusal_rows(conn) == []


def test_request_rows_commit_without_waiting_for_the_wal_and_key_changes_do(committed_db):
    with psycopg.connect(committed_db, autocommit=True) as connection:
        key = make_key(connection).key
        with connection.transaction():
            repository.insert_audit_event(connection, event="updated", key_id=key.id)
            lifecycle = connection.execute("SHOW synchronous_commit").fetchone()
        with connection.transaction():
            repository.record_request(connection, request_record(key.id))
            request = connection.execute("SHOW synchronous_commit").fetchone()
        with connection.transaction():
            repository.record_request_in_window(
                connection, request_record(key.id), rate_limit_per_minute=10
            )
            limited = connection.execute("SHOW synchronous_commit").fetchone()
        with connection.transaction():
            refuse_unknown(connection, "mdw_AAAAAAAA")
            refusal = connection.execute("SHOW synchronous_commit").fetchone()
        afterwards = connection.execute("SHOW synchronous_commit").fetchone()

    assert (lifecycle, afterwards) == (("on",), ("on",))
    assert (request, limited, refusal) == (("off",), ("off",), ("off",))


def test_a_request_recorded_again_after_a_lost_connection_keeps_one_row(conn):
    key = make_key(conn).key
    first = request_record(key.id)
    other = msgspec.structs.replace(first, request_id="r-2")

    repository.record_request(conn, first)
    repository.record_request(conn, first, unless_recorded=True)  # the first one had committed
    repository.record_request(conn, other, unless_recorded=True)  # the first one was lost
    repository.record_request(conn, first, event="auth_failed", unless_recorded=True)

    rows = audit_rows(conn, key.id)
    assert [(r["request_id"], r["event"]) for r in rows] == [
        (None, "created"),
        ("r-1", "request"),
        ("r-2", "request"),
        ("r-1", "auth_failed"),
    ]


def test_a_request_without_an_id_cannot_be_recorded_once(conn):
    key = make_key(conn).key
    anonymous = msgspec.structs.replace(request_record(key.id), request_id=None)

    with pytest.raises(ValueError, match="without an id"):
        repository.record_request(conn, anonymous, unless_recorded=True)
    assert [r["event"] for r in audit_rows(conn, key.id)] == ["created"]
