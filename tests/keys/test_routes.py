"""The admin API key endpoints over HTTP (chalice.test.Client, the test's rolled-back
connection)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib import db
from chalicelib.keys import service, tokens
from chalicelib.keys.models import KeyOut
from tests.factories import make_admin_key, make_key
from tests.keys.helpers import audit_rows, key_count, send

KEYS = "/api/v1/admin/api-keys"


@pytest.fixture
def admin(client: Any, pinned_db: db.Connection) -> str:
    return make_admin_key(pinned_db, name="admin").raw_key


def in_future(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def expire_now(conn: db.Connection, key_id: int) -> None:
    conn.execute(
        "UPDATE api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = %s",
        (key_id,),
    )


# --- create --------------------------------------------------------------------------------


def test_create_answers_201_with_the_raw_key_and_stores_only_its_hash(client, pinned_db, admin):
    response = send(
        client,
        "POST",
        KEYS,
        admin,
        {
            "name": "reporting",
            "scopes": ["read"],
            "expires_at": "2040-01-01T00:00:00Z",
            "allowed_cidrs": ["10.0.0.0/8"],
            "rate_limit_per_minute": 600,
        },
    )

    assert response.status_code == 201
    body = response.json_body
    raw_key = body["api_key"]
    assert tokens.is_well_formed(raw_key)
    assert body["key_prefix"] == raw_key[: tokens.DISPLAY_PREFIX_LENGTH]
    assert body["name"] == "reporting"
    assert body["scopes"] == ["read"]
    assert body["status"] == "active"
    assert body["expires_at"] == "2040-01-01T00:00:00Z"
    assert body["allowed_cidrs"] == ["10.0.0.0/8"]
    assert body["rate_limit_per_minute"] == 600
    assert body["request_count"] == 0
    stored = pinned_db.execute(
        "SELECT key_hash FROM api_keys WHERE id = %s", (body["id"],)
    ).fetchone()
    assert stored == (tokens.hash_key(raw_key),)
    assert not any("hash" in field for field in body)


def test_create_normalises_scopes_and_networks(client, admin):
    response = send(
        client,
        "POST",
        KEYS,
        admin,
        {
            "name": "ops",
            "scopes": ["admin", "read"],
            "allowed_cidrs": ["192.0.2.7", "2001:db8::/32", "10.0.0.0/8", "10.0.0.0/8"],
        },
    )

    assert response.status_code == 201
    assert response.json_body["scopes"] == ["read", "admin"]
    assert response.json_body["allowed_cidrs"] == ["192.0.2.7/32", "2001:db8::/32", "10.0.0.0/8"]


def test_create_records_who_created_the_key(client, pinned_db):
    creator = make_admin_key(pinned_db, name="creator")

    response = send(client, "POST", KEYS, creator.raw_key, {"name": "etl", "scopes": ["read"]})

    rows = audit_rows(pinned_db, response.json_body["id"])
    assert [row["event"] for row in rows] == ["created"]
    assert rows[0]["reason"] == f"scopes read; by key {creator.key.id} ({creator.key.key_prefix})"
    assert rows[0]["source_ip"] == "127.0.0.1"
    request_row = audit_rows(pinned_db, creator.key.id)[-1]
    assert rows[0]["request_id"] == request_row["request_id"]


def test_duplicate_name_is_409_and_writes_nothing(client, pinned_db, admin):
    first = send(client, "POST", KEYS, admin, {"name": "etl", "scopes": ["read"]})
    before = key_count(pinned_db)

    second = send(client, "POST", KEYS, admin, {"name": "etl", "scopes": ["admin"]})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json_body["error"]["code"] == "conflict"
    assert "'etl' already exists" in second.json_body["error"]["message"]
    assert key_count(pinned_db) == before


BAD_CREATE_BODIES = [
    pytest.param(b'{"name": "x", "scopes": ["read"]', "not valid JSON", id="malformed-json"),
    pytest.param(
        {"name": "x", "scopes": ["read"], "owner": "me"},
        "unknown field `owner`",
        id="unknown-field",
    ),
    pytest.param({"name": "x", "scopes": "read"}, "Expected `array`", id="scopes-not-a-list"),
    pytest.param(
        {"name": "x", "scopes": ["read"], "rate_limit_per_minute": "5"},
        "Expected `int | null`, got `str`",
        id="rate-limit-as-string",
    ),
    pytest.param({"name": 5, "scopes": ["read"]}, "Expected `str`", id="name-not-a-string"),
    pytest.param({"name": "", "scopes": ["read"]}, "length >= 1", id="empty-name"),
    pytest.param({"name": "n" * 200, "scopes": ["read"]}, "length <= 100", id="200-char-name"),
    pytest.param(
        {"name": "x'; DROP TABLE api_keys; --", "scopes": ["read"]},
        "Expected `str` matching regex",
        id="sql-injection-name",
    ),
    pytest.param(
        {"name": "x", "scopes": ["write"]},
        "scopes[0] must be one of read, admin; got 'write'",
        id="scope",
    ),
    pytest.param({"name": "x", "scopes": []}, "length >= 1", id="no-scopes"),
    pytest.param({"name": "x"}, "missing required field `scopes`", id="missing-scopes"),
    pytest.param(
        {"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
        "expires_at must be in the future",
        id="expiry-in-the-past",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "expires_at": "2040-01-01T00:00:00"},
        "timezone",
        id="expiry-without-zone",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "allowed_cidrs": ["10.0.0.300/8"]},
        "is not a CIDR",
        id="invalid-cidr",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "allowed_cidrs": ["10.1.2.3/8"]},
        "host bits must be zero",
        id="cidr-with-host-bits",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "rate_limit_per_minute": -1},
        "Expected `int` >= 1",
        id="negative-rate-limit",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "rate_limit_per_minute": 0},
        "Expected `int` >= 1",
        id="zero-rate-limit",
    ),
    pytest.param(b"", "request body is required", id="empty-body"),
    pytest.param(b"[]", "Expected `object`", id="array-body"),
    pytest.param(
        {"name": "x", "scopes": ["read"], "allowed_cidrs": ["fe80::%eth0/64"]},
        "is not a CIDR",
        id="scoped-ipv6-cidr",
    ),
    pytest.param(
        {"name": "x", "scopes": ["read"], "expires_at": "9999-12-31T23:59:59-05:00"},
        "expires_at must be before 9999-12-31",
        id="expiry-past-year-9999",
    ),
    pytest.param({"name": "a\n", "scopes": ["read"]}, "name may hold", id="name-with-newline"),
    pytest.param(
        b'{"name": "x\xff", "scopes": ["read"]}', "not valid JSON (UTF-8)", id="invalid-utf8"
    ),
    pytest.param(
        b'{"name": "x\\u0000", "scopes": ["read"]}', "must not contain NUL", id="nul-in-name"
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_CREATE_BODIES)
def test_create_refuses_bad_input_with_400_and_writes_nothing(
    client, pinned_db, admin, body, message
):
    keys_before = key_count(pinned_db)
    audit_before = len(audit_rows(pinned_db))

    response = send(client, "POST", KEYS, admin, body)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert message in response.json_body["error"]["message"]
    assert key_count(pinned_db) == keys_before
    # Only the request's own audit row was written.
    new_rows = audit_rows(pinned_db)[audit_before:]
    assert [(row["event"], row["status_code"]) for row in new_rows] == [("request", 400)]


# --- list and show -------------------------------------------------------------------------


def test_list_shows_every_key_and_active_only_hides_revoked_and_expired(client, pinned_db, admin):
    live = make_key(pinned_db, name="live").key
    revoked = make_key(pinned_db, name="revoked").key
    expired = make_key(pinned_db, name="expired").key
    send(client, "PUT", f"{KEYS}/{revoked.id}", admin, {"active": False})
    expire_now(pinned_db, expired.id)

    everything = send(client, "GET", KEYS, admin)
    usable = send(client, "GET", f"{KEYS}?active_only=true", admin)

    assert everything.status_code == 200
    by_name = {key["name"]: key["status"] for key in everything.json_body["items"]}
    assert by_name == {
        "admin": "active",
        "live": "active",
        "revoked": "revoked",
        "expired": "expired",
    }
    assert everything.json_body["count"] == 4
    assert [key["name"] for key in usable.json_body["items"]] == ["admin", "live"]
    assert live.id in [key["id"] for key in usable.json_body["items"]]


def test_list_refuses_an_unknown_parameter_value(client, admin):
    response = send(client, "GET", f"{KEYS}?active_only=perhaps", admin)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert "active_only" in response.json_body["error"]["message"]


def test_show_returns_the_key_without_secrets(client, pinned_db, admin):
    created = make_key(pinned_db, name="show-me")

    response = send(client, "GET", f"{KEYS}/{created.key.id}", admin)

    assert response.status_code == 200
    assert response.json_body == {
        **KeyOut.fields_of(created.key, datetime.now(UTC)),
        "created_at": response.json_body["created_at"],
        "updated_at": response.json_body["updated_at"],
    }
    assert created.raw_key not in response.body.decode()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_id_is_404(client, admin, method):
    body = {"active": False} if method == "PUT" else None

    response = send(client, method, f"{KEYS}/987654", admin, body)

    assert response.status_code == 404
    assert response.json_body == {
        "error": {
            "code": "not_found",
            "message": "no API key with id 987654",
            "details": {"id": 987654},
        }
    }


@pytest.mark.parametrize(
    "raw_id", ["abc", "1.5", "-3", "0", "1%20OR%201=1", "99999999999999999999"]
)
def test_non_numeric_id_in_the_path_is_400(client, admin, raw_id):
    response = send(client, "GET", f"{KEYS}/{raw_id}", admin)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert response.json_body["error"]["message"] == "id must be a positive integer"


# --- update, revoke, restore ----------------------------------------------------------------


def test_revoke_then_revoke_again_answers_200_with_the_unchanged_state(client, pinned_db, admin):
    key = make_key(pinned_db).key

    first = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": False})
    second = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": False})

    assert first.status_code == 200
    assert first.json_body["status"] == "revoked"
    assert second.status_code == 200
    assert second.json_body == first.json_body
    events = [row["event"] for row in audit_rows(pinned_db, key.id)]
    assert events == ["created", "revoked"]


def test_restoring_an_active_key_answers_200_unchanged(client, pinned_db, admin):
    key = make_key(pinned_db).key
    before = send(client, "GET", f"{KEYS}/{key.id}", admin).json_body

    response = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": True})

    assert response.status_code == 200
    assert response.json_body == before
    assert [row["event"] for row in audit_rows(pinned_db, key.id)] == ["created"]


def test_revoke_and_restore_record_lifecycle_rows(client, pinned_db, admin):
    key = make_key(pinned_db).key

    send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": False})
    restored = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": True})

    assert restored.status_code == 200
    assert restored.json_body["status"] == "active"
    assert [row["event"] for row in audit_rows(pinned_db, key.id)] == [
        "created",
        "revoked",
        "restored",
    ]


def test_restoring_an_expired_key_is_409_saying_why(client, pinned_db, admin):
    key = make_key(pinned_db).key
    send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": False})
    expire_now(pinned_db, key.id)

    response = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": True})

    assert response.status_code == 409
    assert response.json_body["error"]["code"] == "conflict"
    assert "expired at" in response.json_body["error"]["message"]
    assert "send a later expires_at" in response.json_body["error"]["message"]
    assert send(client, "GET", f"{KEYS}/{key.id}", admin).json_body["status"] == "revoked"


def test_an_expired_key_is_restored_with_a_later_expiry_in_the_same_request(
    client, pinned_db, admin
):
    key = make_key(pinned_db).key
    send(client, "PUT", f"{KEYS}/{key.id}", admin, {"active": False})
    expire_now(pinned_db, key.id)

    response = send(
        client, "PUT", f"{KEYS}/{key.id}", admin, {"active": True, "expires_at": in_future(days=1)}
    )

    assert response.status_code == 200
    assert response.json_body["status"] == "active"


def test_update_changes_only_the_fields_sent_and_null_clears(client, pinned_db, admin):
    key = make_key(
        pinned_db,
        name="before",
        expires_at=datetime(2040, 1, 1, tzinfo=UTC),
        rate_limit_per_minute=5,
    ).key

    response = send(
        client,
        "PUT",
        f"{KEYS}/{key.id}",
        admin,
        {
            "name": "after",
            "scopes": ["read", "admin"],
            "expires_at": None,
            "allowed_cidrs": ["198.51.100.0/24"],
            "rate_limit_per_minute": None,
        },
    )

    assert response.status_code == 200
    body = response.json_body
    assert body["name"] == "after"
    assert body["scopes"] == ["read", "admin"]
    assert body["expires_at"] is None
    assert body["allowed_cidrs"] == ["198.51.100.0/24"]
    assert body["rate_limit_per_minute"] is None
    assert body["active"] is True
    updated = audit_rows(pinned_db, key.id)[-1]
    assert updated["event"] == "updated"
    assert updated["reason"].startswith(
        "changed name, scopes, expires_at, allowed_cidrs, rate_limit_per_minute; by key"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"active": "no"}, "Expected `bool`", id="wrong-type"),
        pytest.param({"enabled": False}, "unknown field `enabled`", id="unknown-field"),
        pytest.param({"name": ""}, "length >= 1", id="empty-name"),
        pytest.param(
            {"scopes": ["root"]},
            "scopes[0] must be one of read, admin; got 'root'",
            id="unknown-scope",
        ),
        pytest.param(
            {"expires_at": "2001-01-01T00:00:00Z"}, "must be in the future", id="past-expiry"
        ),
        pytest.param({"allowed_cidrs": ["nope"]}, "is not a CIDR", id="invalid-cidr"),
        pytest.param({"rate_limit_per_minute": -10}, ">= 1", id="negative-rate-limit"),
        pytest.param(b"{", "not valid JSON", id="malformed-json"),
    ],
)
def test_update_refuses_bad_input_and_changes_nothing(client, pinned_db, admin, body, message):
    key = make_key(pinned_db, name="steady").key

    response = send(client, "PUT", f"{KEYS}/{key.id}", admin, body)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert message in response.json_body["error"]["message"]
    shown = send(client, "GET", f"{KEYS}/{key.id}", admin).json_body
    assert (shown["name"], shown["updated_at"]) == (
        "steady",
        key.updated_at.isoformat().replace("+00:00", "Z"),
    )
    assert [row["event"] for row in audit_rows(pinned_db, key.id)] == ["created"]


def test_renaming_to_a_taken_name_is_409(client, pinned_db, admin):
    make_key(pinned_db, name="taken")
    key = make_key(pinned_db, name="mine").key

    response = send(client, "PUT", f"{KEYS}/{key.id}", admin, {"name": "taken"})

    assert response.status_code == 409
    assert response.json_body["error"]["code"] == "conflict"
    assert send(client, "GET", f"{KEYS}/{key.id}", admin).json_body["name"] == "mine"


# --- delete --------------------------------------------------------------------------------


def test_delete_is_permanent_and_keeps_the_audit_history(client, pinned_db, admin):
    created = make_key(pinned_db)
    key_id = created.key.id
    send(client, "GET", "/api/v1/symbols", created.raw_key)

    deleted = send(client, "DELETE", f"{KEYS}/{key_id}", admin)

    assert deleted.status_code == 204
    assert deleted.body == b""
    assert send(client, "GET", f"{KEYS}/{key_id}", admin).status_code == 404
    assert send(client, "DELETE", f"{KEYS}/{key_id}", admin).status_code == 404
    assert send(client, "PUT", f"{KEYS}/{key_id}", admin, {"active": True}).status_code == 404
    assert send(client, "GET", "/api/v1/symbols", created.raw_key).status_code == 401
    history = send(client, "GET", f"{KEYS}/{key_id}/audit", admin)
    assert history.status_code == 200
    assert [row["event"] for row in history.json_body["items"]] == [
        "deleted",
        "request",
        "created",
    ]
    # The deleted key is unknown now: its refusal is recorded by prefix, not by id.
    refused = [row for row in audit_rows(pinned_db) if row["event"] == "auth_failed"]
    assert [(row["key_id"], row["reason"], row["key_prefix"]) for row in refused] == [
        (None, "unknown_key", created.raw_key[:12])
    ]


# --- rotate --------------------------------------------------------------------------------


def test_rotate_gives_a_new_key_and_the_old_one_works_during_the_grace_period(
    client, pinned_db, admin
):
    created = make_key(pinned_db)

    response = send(
        client, "POST", f"{KEYS}/{created.key.id}/rotate", admin, {"grace_seconds": 3600}
    )

    assert response.status_code == 200
    body = response.json_body
    new_key = body["api_key"]
    assert new_key != created.raw_key
    assert body["id"] == created.key.id
    assert body["key_prefix"] == new_key[:12]
    assert body["previous_key_prefix"] == created.raw_key[:12]
    grace_end = datetime.fromisoformat(body["previous_key_expires_at"])
    assert timedelta(minutes=59) < grace_end - datetime.now(UTC) <= timedelta(hours=1)
    assert send(client, "GET", "/api/v1/symbols", new_key).status_code == 200
    assert send(client, "GET", "/api/v1/symbols", created.raw_key).status_code == 200
    rotated = audit_rows(pinned_db, created.key.id)
    assert [row["event"] for row in rotated if row["event"] != "request"] == ["created", "rotated"]
    assert [row["key_prefix"] for row in rotated if row["event"] == "request"] == [
        new_key[:12],
        created.raw_key[:12],
    ]


def test_rotate_without_a_body_stops_the_old_key_at_once(client, pinned_db, admin):
    created = make_key(pinned_db)

    response = send(client, "POST", f"{KEYS}/{created.key.id}/rotate", admin)

    assert response.status_code == 200
    assert response.json_body["previous_key_prefix"] is None
    assert send(client, "GET", "/api/v1/symbols", created.raw_key).status_code == 401
    assert send(client, "GET", "/api/v1/symbols", response.json_body["api_key"]).status_code == 200


def test_rotation_grace_never_outlives_the_key(client, pinned_db, admin):
    expires_at = datetime.now(UTC) + timedelta(minutes=5)
    created = make_key(pinned_db, expires_at=expires_at)

    response = send(
        client, "POST", f"{KEYS}/{created.key.id}/rotate", admin, {"grace_seconds": 86400}
    )

    assert response.status_code == 200
    assert datetime.fromisoformat(response.json_body["previous_key_expires_at"]) == expires_at
    assert datetime.fromisoformat(response.json_body["expires_at"]) == expires_at


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"grace_seconds": -1}, ">= 0", id="negative-grace"),
        pytest.param({"grace_seconds": "1h"}, "Expected `int`", id="grace-not-a-number"),
        pytest.param({"grace": 10}, "unknown field `grace`", id="unknown-field"),
    ],
)
def test_rotate_refuses_bad_input_and_keeps_the_key(client, pinned_db, admin, body, message):
    created = make_key(pinned_db)

    response = send(client, "POST", f"{KEYS}/{created.key.id}/rotate", admin, body)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert message in response.json_body["error"]["message"]
    assert send(client, "GET", "/api/v1/symbols", created.raw_key).status_code == 200


def test_rotating_an_unknown_key_is_404(client, admin):
    response = send(client, "POST", f"{KEYS}/424242/rotate", admin, {"grace_seconds": 5})

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


# --- audit ---------------------------------------------------------------------------------


def test_audit_pages_newest_first_with_a_cursor(client, pinned_db, admin):
    created = make_key(pinned_db)
    for _ in range(4):
        send(client, "GET", "/api/v1/symbols", created.raw_key)
    path = f"{KEYS}/{created.key.id}/audit"

    first = send(client, "GET", f"{path}?limit=2", admin).json_body
    second = send(client, "GET", f"{path}?limit=2&cursor={first['next_cursor']}", admin).json_body
    third = send(client, "GET", f"{path}?limit=2&cursor={second['next_cursor']}", admin).json_body

    ids = [row["id"] for page in (first, second, third) for row in page["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5
    assert [row["event"] for row in third["items"]] == ["created"]
    assert third["next_cursor"] is None
    request_row = first["items"][0]
    assert request_row["method"] == "GET"
    assert request_row["route"] == "/api/v1/symbols"
    assert request_row["path"] == "/api/v1/symbols"
    assert request_row["status_code"] == 200
    assert request_row["source_ip"] == "127.0.0.1"
    assert request_row["latency_ms"] >= 0
    assert request_row["request_id"]
    assert request_row["key_prefix"] == created.raw_key[:12]


def test_audit_filters_by_status_route_event_and_time(client, pinned_db, admin):
    created = make_key(pinned_db)
    send(client, "GET", "/api/v1/symbols", created.raw_key)
    send(client, "GET", "/api/v1/historical/NOPE", created.raw_key)
    path = f"{KEYS}/{created.key.id}/audit"

    not_found = send(client, "GET", f"{path}?status=404", admin).json_body["items"]
    by_route = send(client, "GET", f"{path}?route=/api/v1/symbols", admin).json_body["items"]
    lifecycle = send(client, "GET", f"{path}?event=created", admin).json_body["items"]
    since = quote(in_future(hours=1))
    future = send(client, "GET", f"{path}?since={since}", admin).json_body["items"]
    past = send(client, "GET", f"{path}?until=2001-01-01T00:00:00Z", admin).json_body["items"]

    assert [row["path"] for row in not_found] == ["/api/v1/historical/NOPE"]
    assert [row["status_code"] for row in by_route] == [200]
    assert [row["event"] for row in lifecycle] == ["created"]
    assert future == []
    assert past == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("limit=1001", "<= 1000", id="limit-over-maximum"),
        pytest.param("limit=0", ">= 1", id="limit-zero"),
        pytest.param("limit=many", "Expected `int`", id="limit-not-a-number"),
        pytest.param("status=42", ">= 100", id="status-out-of-range"),
        pytest.param("since=yesterday", "Invalid RFC3339", id="since-not-a-time"),
        pytest.param(
            "event=login",
            "event must be one of request, auth_failed, created, updated, revoked, restored, "
            "rotated, deleted; got 'login'",
            id="unknown-event",
        ),
        pytest.param("sort=asc", "unknown field `sort`", id="unknown-parameter"),
        pytest.param("cursor=not-a-cursor", "cursor is not valid", id="garbage-cursor"),
        pytest.param("cursor=MTAuMGJhZGJhZGJhZGJhZGJhZA", "cursor is not valid", id="forged"),
        pytest.param("route=%00", "must not contain NUL", id="nul-in-route"),
    ],
)
def test_audit_refuses_bad_parameters(client, pinned_db, admin, query, message):
    key = make_key(pinned_db).key

    response = send(client, "GET", f"{KEYS}/{key.id}/audit?{query}", admin)

    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "bad_request"
    assert message in response.json_body["error"]["message"]


def test_a_cursor_only_continues_the_listing_it_came_from(client, pinned_db, admin):
    created = make_key(pinned_db)
    other = make_key(pinned_db).key
    for _ in range(3):
        send(client, "GET", "/api/v1/symbols", created.raw_key)
    path = f"{KEYS}/{created.key.id}/audit"
    cursor = send(client, "GET", f"{path}?limit=1", admin).json_body["next_cursor"]

    other_key = send(client, "GET", f"{KEYS}/{other.id}/audit?cursor={cursor}", admin)
    other_filter = send(client, "GET", f"{path}?status=200&cursor={cursor}", admin)

    assert cursor
    assert other_key.status_code == 400
    assert other_filter.status_code == 400
    assert other_filter.json_body["error"]["code"] == "bad_request"


def test_audit_of_a_key_that_never_existed_is_404(client, admin):
    response = send(client, "GET", f"{KEYS}/555555/audit", admin)

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


# --- usage counters ------------------------------------------------------------------------


def test_usage_counters_count_every_audited_request_at_once_and_survive_a_fold(
    client, pinned_db, admin
):
    created = make_key(pinned_db)
    path = f"{KEYS}/{created.key.id}"
    before = send(client, "GET", path, admin).json_body
    for _ in range(3):
        send(client, "GET", "/api/v1/symbols", created.raw_key)

    shown = send(client, "GET", path, admin).json_body
    # The archive job folds rows older than the settle time into the stored counters.
    pinned_db.execute(
        "UPDATE api_key_audit SET occurred_at = occurred_at - interval '1 minute'"
        " WHERE key_id = %s",
        (created.key.id,),
    )
    service.fold_usage(pinned_db)
    send(client, "GET", "/api/v1/symbols", created.raw_key)
    after_fold = send(client, "GET", path, admin).json_body
    listed = send(client, "GET", KEYS, admin).json_body

    newest = pinned_db.execute(
        "SELECT max(occurred_at) FROM api_key_audit WHERE key_id = %s AND event = 'request'",
        (created.key.id,),
    ).fetchone()
    assert newest is not None
    assert (before["request_count"], before["last_used_at"]) == (0, None)
    assert shown["request_count"] == 3
    assert after_fold["request_count"] == 4
    assert datetime.fromisoformat(after_fold["last_used_at"]) == newest[0]
    assert [k["request_count"] for k in listed["items"] if k["id"] == created.key.id] == [4]


def test_only_responses_with_a_raw_key_forbid_storing_them(client, pinned_db, admin):
    created = send(client, "POST", KEYS, admin, {"name": "cached-nowhere", "scopes": ["read"]})
    key_id = created.json_body["id"]
    rotated = send(client, "POST", f"{KEYS}/{key_id}/rotate", admin)
    shown = send(client, "GET", f"{KEYS}/{key_id}", admin)

    assert (created.status_code, rotated.status_code) == (201, 200)
    assert created.headers["Cache-Control"] == "no-store"
    assert rotated.headers["Cache-Control"] == "no-store"
    assert created.json_body["api_key"] != rotated.json_body["api_key"]
    assert "Cache-Control" not in shown.headers
