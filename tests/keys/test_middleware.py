"""The request middleware: status re-check within the cache TTL, scope re-check, IP allow-list,
rate limit, one audit row per request, and what it costs in database round trips.

Most tests call the API function with the event API Gateway sends while it has the token's
policy cached: the authorizer does not run, so only the middleware stands between a revoked
key and the view.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from app import app
from chalicelib import container, db
from chalicelib.errors import DatabaseUnavailable
from chalicelib.keys import access, repository
from chalicelib.keys.middleware import enforce_key_policy
from chalicelib.keys.rate_limit import RateLimiter
from devtools.roundtrips import counting_round_trips
from tests.conftest import PinnedConnection
from tests.factories import make_admin_key, make_key
from tests.keys.helpers import (
    audit_rows,
    gateway_event,
    invoke_api,
    send,
)

SYMBOLS = "/api/v1/symbols"
KEY_ROUTE = "/api/v1/admin/api-keys/{key_id}"


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def call(key: Any, **options: Any) -> dict[str, Any]:
    return invoke_api(gateway_event(key, route=options.pop("route", SYMBOLS), **options))


def test_an_authorized_request_writes_one_audit_row_with_its_facts(pinned_db):
    created = make_admin_key(pinned_db)
    audit_before = len(audit_rows(pinned_db))

    response = invoke_api(
        gateway_event(
            created.key,
            route=KEY_ROUTE,
            path_parameters={"key_id": str(created.key.id)},
            source_ip="198.51.100.23",
            request_id="c0ffee-42",
        )
    )

    assert response["statusCode"] == 200
    (row,) = audit_rows(pinned_db)[audit_before:]
    assert row == {
        "id": row["id"],
        "key_id": created.key.id,
        "event": "request",
        "method": "GET",
        "route": KEY_ROUTE,
        "path": f"/api/v1/admin/api-keys/{created.key.id}",
        "status_code": 200,
        "latency_ms": row["latency_ms"],
        "source_ip": "198.51.100.23",
        "request_id": "c0ffee-42",
        "key_prefix": created.key.key_prefix,
        "reason": None,
    }
    assert 0 <= row["latency_ms"] < 10_000


def test_errors_rendered_by_the_view_are_audited_with_their_status(pinned_db):
    created = make_key(pinned_db)

    response = call(
        created.key, route="/api/v1/historical/{symbol}", path_parameters={"symbol": "NOPE"}
    )

    assert response["statusCode"] == 404
    row = audit_rows(pinned_db, created.key.id)[-1]
    assert (row["status_code"], row["path"], row["reason"]) == (
        404,
        "/api/v1/historical/NOPE",
        None,
    )


def test_public_routes_are_not_audited(client, pinned_db):
    response = client.http.get("/health")

    assert response.status_code == 200
    assert audit_rows(pinned_db) == []


def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(pinned_db, set_env, monkeypatch):
    set_env(AUTH_CACHE_TTL_SECONDS="10")
    clock = [1000.0]
    monkeypatch.setattr(container.current.key_statuses, "_monotonic", lambda: clock[0])
    created = make_key(pinned_db)
    assert call(created.key)["statusCode"] == 200  # status read and cached at 1000.0

    pinned_db.execute("UPDATE api_keys SET active = false WHERE id = %s", (created.key.id,))
    clock[0] = 1009.9
    within_ttl = call(created.key)
    clock[0] = 1010.0
    after_ttl = call(created.key, request_id="req-after")

    # Within the TTL the container still trusts what it read; after it, the key is refused.
    assert within_ttl["statusCode"] == 200
    assert after_ttl["statusCode"] == 401
    assert body_of(after_ttl) == {
        "error": {"code": "unauthorized", "message": "the API key is not valid (revoked)"}
    }
    row = audit_rows(pinned_db, created.key.id)[-1]
    assert (row["event"], row["reason"], row["status_code"]) == ("auth_failed", "revoked", 401)
    assert (row["source_ip"], row["request_id"]) == ("203.0.113.9", "req-after")


def test_revoking_through_the_api_takes_effect_at_once_in_the_same_container(client, pinned_db):
    admin = make_admin_key(pinned_db)
    created = make_key(pinned_db)
    assert call(created.key)["statusCode"] == 200

    send(
        client, "PUT", f"/api/v1/admin/api-keys/{created.key.id}", admin.raw_key, {"active": False}
    )

    assert call(created.key)["statusCode"] == 401


def test_a_deleted_key_is_refused(pinned_db):
    created = make_key(pinned_db)
    pinned_db.execute("DELETE FROM api_keys WHERE id = %s", (created.key.id,))

    response = call(created.key)

    assert response["statusCode"] == 401
    assert body_of(response)["error"]["message"] == "the API key is not valid (deleted)"


def test_a_rotated_out_key_is_refused_though_its_policy_is_cached(pinned_db):
    created = make_key(pinned_db)
    repository.rotate_key(
        pinned_db,
        created.key.id,
        key_hash=b"\x01" * 32,
        key_prefix="mdw_rotated0",
        previous_expires_at=None,
    )

    response = call(created.key)

    assert response["statusCode"] == 401
    assert audit_rows(pinned_db, created.key.id)[-1]["reason"] == "rotated_out"


def test_scopes_are_rechecked_when_a_cached_policy_still_allows_admin_routes(pinned_db):
    created = make_admin_key(pinned_db)
    pinned_db.execute("UPDATE api_keys SET scopes = '{read}' WHERE id = %s", (created.key.id,))

    admin_route = call(created.key, route="/api/v1/admin/api-keys")
    read_route = call(created.key)

    assert admin_route["statusCode"] == 403
    assert body_of(admin_route)["error"] == {
        "code": "forbidden",
        "message": "this API key's scopes do not include this route",
    }
    assert read_route["statusCode"] == 200
    refused = audit_rows(pinned_db, created.key.id)[-2]
    assert (refused["status_code"], refused["reason"]) == (403, "scope_not_allowed")


@pytest.mark.parametrize(
    ("cidrs", "source_ip", "status"),
    [
        (["198.51.100.0/24"], "198.51.100.200", 200),
        (["198.51.100.0/24"], "203.0.113.9", 403),
        (["198.51.100.0/24", "2001:db8::/32"], "2001:db8::1", 200),
        (["2001:db8::/32"], "2001:db9::1", 403),
        (["198.51.100.0/24"], "::ffff:198.51.100.1", 200),
        (["198.51.100.0/24"], "not-an-address", 403),
        ([], "203.0.113.9", 200),
    ],
)
def test_the_ip_allow_list(pinned_db, cidrs, source_ip, status):
    created = make_key(pinned_db, allowed_cidrs=cidrs)

    response = call(created.key, source_ip=source_ip)

    assert response["statusCode"] == status
    row = audit_rows(pinned_db, created.key.id)[-1]
    assert row["status_code"] == status
    if status == 403:
        assert body_of(response)["error"]["code"] == "forbidden"
        assert row["reason"] == "source_ip_not_allowed"


def test_the_rate_limit_answers_429_with_retry_after(pinned_db):
    created = make_key(pinned_db, rate_limit_per_minute=3)

    statuses = [call(created.key)["statusCode"] for _ in range(3)]
    refused = call(created.key)

    assert statuses == [200, 200, 200]
    assert refused["statusCode"] == 429
    assert body_of(refused) == {
        "error": {
            "code": "rate_limited",
            "message": "this API key is limited to 3 requests per minute",
        }
    }
    assert 55 <= int(refused["headers"]["Retry-After"]) <= 60
    rows = [row for row in audit_rows(pinned_db, created.key.id) if row["event"] == "request"]
    assert [(row["status_code"], row["reason"]) for row in rows] == [
        (200, None),
        (200, None),
        (200, None),
        (429, "rate_limited"),
    ]


def test_the_rate_window_is_shared_through_the_database(pinned_db):
    created = make_key(pinned_db, rate_limit_per_minute=2)
    assert [call(created.key)["statusCode"] for _ in range(2)] == [200, 200]

    # Another container: nothing in memory, the window only in PostgreSQL. Its first request
    # is the one a container can let through beyond the limit; its write learns the window.
    container.current.rate_limiter.clear()
    first_elsewhere = call(created.key)
    second_elsewhere = call(created.key)

    assert first_elsewhere["statusCode"] == 200
    assert second_elsewhere["statusCode"] == 429


def test_the_rate_window_slides_and_refused_requests_do_not_fill_it(pinned_db):
    created = make_key(pinned_db, rate_limit_per_minute=2)
    assert [call(created.key)["statusCode"] for _ in range(3)] == [200, 200, 429]

    pinned_db.execute(
        "UPDATE api_key_audit SET occurred_at = occurred_at - interval '61 seconds'"
        " WHERE key_id = %s AND reason IS NULL",
        (created.key.id,),
    )
    container.current.rate_limiter.clear()  # as if the Retry-After had passed

    assert [call(created.key)["statusCode"] for _ in range(3)] == [200, 200, 429]


def test_a_changed_rate_limit_applies_from_the_next_status_read(pinned_db):
    created = make_key(pinned_db, rate_limit_per_minute=1)
    assert [call(created.key)["statusCode"] for _ in range(2)] == [200, 429]

    pinned_db.execute(
        "UPDATE api_keys SET rate_limit_per_minute = 100 WHERE id = %s", (created.key.id,)
    )
    access.forget_statuses()

    assert call(created.key)["statusCode"] == 200


def test_the_rate_limiter_forgets_a_window_that_is_no_longer_full():
    limiter = RateLimiter()
    limiter.observe(7, 5, used=5, seconds_until_slot=30)
    full = limiter.admit(7, 5)
    other_limit = limiter.admit(7, 6)
    limiter.observe(7, 5, used=2, seconds_until_slot=30)

    assert 29 < full <= 30
    assert other_limit == 0
    assert limiter.admit(7, 5) == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_container_admits_the_limit_per_sliding_minute_and_says_when_a_slot_frees():
    limiter = RateLimiter()
    clock = FakeClock()
    limiter._monotonic = clock
    admitted = []
    for step in range(3):
        clock.now = 1000.0 + 10 * step
        admitted.append(limiter.admit(7, 3))
    clock.now = 1035.0
    refused = limiter.admit(7, 3)
    clock.now = 1060.0  # the first admission (at 1000) leaves the window
    after_first_left = limiter.admit(7, 3)
    refused_again = limiter.admit(7, 3)
    lowered = limiter.admit(7, 2)  # 3 admitted in the window now: a limit of 2 waits longer

    assert admitted == [0.0, 0.0, 0.0]
    assert refused == 25.0
    assert after_first_left == 0.0
    assert refused_again == 10.0  # the admission at 1010 frees at 1070
    assert lowered == 20.0  # with 2 slots, the one at 1020 must leave too
    assert limiter.admit(8, 3) == 0.0  # another key has its own window


def test_racing_threads_never_take_more_slots_than_the_limit():
    limiter = RateLimiter()
    start = threading.Barrier(40)
    results: list[float] = []

    def take() -> None:
        start.wait()
        for _ in range(5):
            results.append(limiter.admit(7, 30))

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(results) == 200
    assert results.count(0.0) == 30


def test_a_failed_audit_write_is_logged_and_the_response_still_goes_out(
    pinned_db, monkeypatch, caplog
):
    created = make_key(pinned_db)

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise DatabaseUnavailable("cannot connect to the database")

    monkeypatch.setattr(repository, "record_request", unavailable)
    with caplog.at_level(logging.ERROR, logger="chalicelib.keys.middleware"):
        response = call(created.key, request_id="lost-1")

    assert response["statusCode"] == 200
    assert "could not write the audit row of request lost-1" in caplog.text


def test_an_unreachable_database_during_the_status_check_is_503(pinned_db):
    created = make_key(pinned_db)
    assert call(created.key)["statusCode"] == 200  # the container started fine
    access.forget_statuses()
    db.set_database(db.Database("postgresql://mdw@127.0.0.1:1/nowhere", connect_timeout=1))

    response = call(created.key)

    assert response["statusCode"] == 503
    assert body_of(response)["error"]["code"] == "database_unavailable"


def test_a_connection_lost_during_the_status_check_is_503_in_the_one_body(pinned_db, database_url):
    created = make_key(pinned_db)
    assert call(created.key)["statusCode"] == 200
    access.forget_statuses()
    lost = db.connect(database_url)
    lost.close()  # a real psycopg connection whose server side is gone
    db.set_database(PinnedConnection(lost))

    response = call(created.key)

    assert response["statusCode"] == 503
    assert body_of(response) == {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable; retry shortly",
        }
    }


# --- cost ----------------------------------------------------------------------------------


def round_trips_of(conn: db.Connection, event: dict[str, Any]) -> int:
    with counting_round_trips(conn) as counted:
        response = invoke_api(event)
    assert response["statusCode"] == 200
    return counted.count


@pytest.mark.parametrize("rate_limit", [None, 1000], ids=["no-rate-limit", "rate-limited"])
def test_the_middleware_costs_one_round_trip_on_a_warm_container(
    pinned_db, monkeypatch, rate_limit
):
    created = make_admin_key(pinned_db, rate_limit_per_minute=rate_limit)
    event = gateway_event(
        created.key, route=KEY_ROUTE, path_parameters={"key_id": str(created.key.id)}
    )
    invoke_api(event)  # warm: schema check done, key status cached

    with_middleware = round_trips_of(pinned_db, event)
    without = [entry for entry in app.middleware_handlers if entry[0] is not enforce_key_policy]
    monkeypatch.setattr(app, "middleware_handlers", without)
    without_middleware = round_trips_of(pinned_db, event)

    assert without_middleware >= 1
    assert with_middleware - without_middleware == 1


def test_a_cold_status_cache_costs_one_more_round_trip(pinned_db):
    created = make_key(pinned_db)
    event = gateway_event(created.key, route=SYMBOLS)
    invoke_api(event)
    warm = round_trips_of(pinned_db, event)

    access.forget_statuses()
    cold = round_trips_of(pinned_db, event)

    assert cold - warm == 1


def test_the_rate_limiter_forgets_idle_keys_first_when_it_reaches_its_bound():
    limiter = RateLimiter(max_keys=3)
    clock = FakeClock()
    limiter._monotonic = clock
    limiter.admit(1, 1)  # key 1 is full at 1000
    clock.now = 1030.0
    limiter.admit(2, 5)
    limiter.admit(3, 5)
    clock.now = 1070.0  # key 1's admission left the window: it is idle
    limiter.admit(4, 5)  # a fourth key: room is made by dropping idle key 1

    assert limiter.tracked_keys() == 3
    clock.now = 1071.0
    limiter.admit(5, 5)  # none idle now: the key admitted least recently (2) goes
    assert limiter.tracked_keys() == 3
    assert limiter.admit(3, 1) > 0  # key 3 still remembers its admission at 1030
    assert limiter.admit(2, 1) == 0  # key 2 was forgotten: it starts over


def test_the_container_bounds_the_rate_limiter():
    assert container.current.rate_limiter.max_keys == 10_000
