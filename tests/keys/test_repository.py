"""The API key SQL: lookups by hash, the rate window, usage folding, audit paging and the
retention helpers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from chalicelib import db
from chalicelib.errors import Conflict
from chalicelib.keys import repository, tokens
from chalicelib.keys.models import RequestRecord
from tests.factories import make_key


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
    folded = repository.get_key(conn, key.id)

    assert (changed, again) == (1, 0)
    assert folded is not None
    assert folded.request_count == 3
    newest = conn.execute(
        "SELECT max(occurred_at) FROM api_key_audit WHERE key_id = %s"
        " AND occurred_at < clock_timestamp() - interval '30 seconds'",
        (key.id,),
    ).fetchone()
    assert newest is not None
    assert folded.last_used_at == newest[0]
    assert repository.fold_usage(conn, key_id=key.id, settle_seconds=0) == 1
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
    folded = repository.get_key(conn, key.id)

    assert folded is not None
    assert folded.request_count == 0


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
        folded = repository.get_key(first, key.id)

    assert result == [0]
    assert folded is not None
    assert folded.request_count == 5


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
