"""API key rules independent of HTTP: validation, revoke/restore, rotation, the audit cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.keys import repository, service, tokens
from chalicelib.keys.models import Actor, AuditQuery, UpdateKeyRequest
from tests.factories import make_key
from tests.keys.helpers import audit_rows


def test_create_checks_what_the_request_model_cannot(conn):
    with pytest.raises(BadRequest, match="unknown scope"):
        service.create_key(conn, name="x", scopes=["superuser"])
    with pytest.raises(BadRequest, match="at least one scope"):
        service.create_key(conn, name="x", scopes=[])
    with pytest.raises(BadRequest, match="in the future"):
        service.create_key(conn, name="x", scopes=["read"], expires_at=datetime.now(UTC))
    with pytest.raises(BadRequest, match="needs a time zone"):
        service.create_key(conn, name="x", scopes=["read"], expires_at=datetime(2040, 1, 1))
    with pytest.raises(BadRequest, match="not a CIDR"):
        service.create_key(conn, name="x", scopes=["read"], allowed_cidrs=["10.0.0.1/8"])

    assert repository.list_keys(conn) == []


def test_create_records_a_lifecycle_row_with_the_actor(conn):
    created = service.create_key(
        conn, name="etl", scopes=["admin", "read", "admin"], actor=Actor(who="cli ops@host")
    )

    assert created.key.scopes == ["read", "admin"]
    assert tokens.hash_key(created.raw_key) != created.raw_key.encode()
    (row,) = audit_rows(conn, created.key.id)
    assert (row["event"], row["reason"]) == ("created", "scopes read,admin; by cli ops@host")


def test_an_update_that_changes_nothing_writes_nothing(conn):
    key = make_key(conn, name="same").key

    unchanged = service.update_key(
        conn, key.id, UpdateKeyRequest(name="same", scopes=["read"], active=True)
    )

    assert unchanged == key
    assert [row["event"] for row in audit_rows(conn, key.id)] == ["created"]


def test_restore_with_a_new_expiry_brings_back_an_expired_key(conn):
    key = make_key(conn).key
    service.revoke_key(conn, key.id)
    conn.execute("UPDATE api_keys SET expires_at = clock_timestamp() WHERE id = %s", (key.id,))

    with pytest.raises(Conflict, match="cannot be restored"):
        service.restore_key(conn, key.id)
    restored = service.restore_key(conn, key.id, expires_at=None)

    assert restored.state(datetime.now(UTC)) == "active"
    assert restored.expires_at is None


def test_rotating_twice_forgets_the_oldest_key_at_once(conn):
    created = make_key(conn)
    second = service.rotate_key(conn, created.key.id, grace_seconds=600)
    third = service.rotate_key(conn, created.key.id, grace_seconds=600)

    assert repository.get_status_by_hash(conn, tokens.hash_key(created.raw_key)) is None
    previous = repository.get_status_by_hash(conn, tokens.hash_key(second.raw_key))
    assert previous is not None
    assert previous.previous_key_prefix == second.raw_key[:12]
    assert third.key.key_prefix == third.raw_key[:12]


def test_an_expired_key_cannot_be_rotated(conn):
    key = make_key(conn).key
    conn.execute("UPDATE api_keys SET expires_at = clock_timestamp() WHERE id = %s", (key.id,))

    with pytest.raises(Conflict, match="before rotating"):
        service.rotate_key(conn, key.id, grace_seconds=60)


def test_deleting_keeps_a_record_of_the_deletion(conn):
    key = make_key(conn, name="gone").key

    service.delete_key(conn, key.id, actor=Actor(who="key 1 (mdw_12345678)"))

    with pytest.raises(NotFound):
        service.get_key(conn, key.id)
    with pytest.raises(NotFound):
        service.delete_key(conn, key.id)
    assert audit_rows(conn, key.id)[-1]["reason"] == "name gone; by key 1 (mdw_12345678)"


def test_cursors_round_trip_and_refuse_anything_else():
    cursor = service.encode_cursor(12345, "abcdef0123456789")

    assert service.decode_cursor(cursor, "abcdef0123456789") == 12345
    for forged in [
        service.encode_cursor(12345, "0000000000000000"),  # another listing's
        service.encode_cursor(0, "abcdef0123456789"),
        cursor[:-2],
        cursor + "x",
        "!!!",
        "",
        "é",
    ]:
        with pytest.raises(BadRequest, match="cursor is not valid"):
            service.decode_cursor(forged, "abcdef0123456789")


def test_audit_pages_end_with_no_cursor(conn):
    key = make_key(conn).key
    service.revoke_key(conn, key.id)
    service.restore_key(conn, key.id)

    first = service.audit_page(conn, key.id, AuditQuery(limit=2))
    second = service.audit_page(conn, key.id, AuditQuery(limit=2, cursor=first.next_cursor))

    assert [row.event for row in first.items] == ["restored", "revoked"]
    assert [row.event for row in second.items] == ["created"]
    assert second.next_cursor is None


def test_fold_usage_is_what_show_and_list_report(conn):
    key = make_key(conn).key
    conn.execute(
        "INSERT INTO api_key_audit (key_id, occurred_at, event, status_code)"
        " VALUES (%s, clock_timestamp() - interval '1 minute', 'request', 200)",
        (key.id,),
    )

    shown = service.get_key(conn, key.id)
    listed = service.list_keys(conn)

    assert shown.request_count == 1
    assert [k.request_count for k in listed if k.id == key.id] == [1]
    assert shown.last_used_at is not None
    assert shown.last_used_at < datetime.now(UTC) - timedelta(seconds=30)
