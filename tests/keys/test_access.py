"""The rules the authorizer and the middleware share, and the status cache."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib import container, db
from chalicelib.config import PROJECT_ROOT
from chalicelib.errors import DatabaseUnavailable
from chalicelib.keys import access
from chalicelib.keys.models import KeyStatus
from chalicelib.keys.status_cache import StatusCache

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def status(**overrides: object) -> KeyStatus:
    values: dict[str, object] = {
        "id": 7,
        "scopes": ["read"],
        "active": True,
        "expires_at": None,
        "allowed_cidrs": [],
        "rate_limit_per_minute": None,
        "key_prefix": "mdw_current0",
        "previous_key_prefix": "mdw_previous",
        "previous_key_expires_at": NOW + timedelta(minutes=5),
    }
    values.update(overrides)
    return KeyStatus(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "which", "reason"),
    [
        (status(), access.CURRENT, None),
        (status(), access.PREVIOUS, None),
        (None, access.CURRENT, "deleted"),
        (status(active=False), access.CURRENT, "revoked"),
        (status(expires_at=NOW), access.CURRENT, "expired"),
        (status(expires_at=NOW - timedelta(seconds=1)), access.PREVIOUS, "expired"),
        (status(previous_key_expires_at=NOW), access.PREVIOUS, "rotated_out"),
        (status(previous_key_expires_at=NOW - timedelta(days=1)), access.PREVIOUS, "rotated_out"),
        (status(previous_key_expires_at=None), access.PREVIOUS, "rotated_out"),
        (status(), None, "rotated_out"),
    ],
)
def test_refusal_reason(key, which, reason):
    assert access.refusal_reason(key, which, NOW) == reason


def _presented(prefix: str) -> str:
    """A display prefix cut from a presented token at run time, as the authorizer does: equal to
    the stored prefix, never the same object."""
    return (prefix + "body-of-the-token")[: len(prefix)]


def test_credential_for_tells_the_current_key_from_the_previous_one():
    key = status()

    assert access.credential_for(key, _presented("mdw_current0")) == access.CURRENT
    assert access.credential_for(key, _presented("mdw_previous")) == access.PREVIOUS
    assert access.credential_for(key, _presented("mdw_somebody")) is None
    # A prefix that sorts before both is still neither.
    assert access.credential_for(key, _presented("mdw_aaaaaaaa")) is None


@pytest.mark.parametrize(
    ("scopes", "route", "reaches"),
    [
        (["read"], "/api/v1/symbols", True),
        (["read"], "/api/v1/admin/api-keys", False),
        (["admin"], "/api/v1/admin/api-keys", True),
        (["read", "admin"], "/api/v1/historical/{symbol}", True),
        (["read"], "/api/v1/administrators", True),  # only the admin prefix is admin-only
        # The Polygon-compatible read routes sit outside /api/v1 and are read routes.
        (["read"], "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}", True),
        (["read"], "/v2/aggs/grouped/locale/us/market/stocks/{date}", True),
        (["read"], "/v2/aggs/grouped/locale/global/market/crypto/{date}", True),
        (["read"], "/v3/reference/splits", True),
    ],
)
def test_reaches_route(scopes, route, reaches):
    assert access.reaches_route(scopes, route) is reaches


@pytest.mark.parametrize(
    ("cidrs", "source_ip", "allowed"),
    [
        ([], None, True),
        (["10.0.0.0/8"], "10.255.0.1", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["10.0.0.0/8"], None, False),
        (["10.0.0.0/8"], "garbage", False),
        (["2001:db8::/32"], "2001:db8:ffff::1", True),
        (["2001:db8::/32"], "10.0.0.1", False),
        (["10.0.0.0/8"], "::ffff:10.1.2.3", True),
    ],
)
def test_source_ip_allowed(cidrs, source_ip, allowed):
    assert access.source_ip_allowed(cidrs, source_ip) is allowed


def test_the_status_cache_trusts_entries_for_the_ttl_only(monkeypatch):
    cache = StatusCache()
    clock = [1000.0]
    monkeypatch.setattr(cache, "_monotonic", lambda: clock[0])
    cache.remember(7, status(), key_hash=b"h" * 32)

    clock[0] += 9.9
    fresh = cache.status(7, ttl=10)
    fresh_id = cache.key_id_for(b"h" * 32, ttl=10)
    clock[0] += 0.1
    stale = cache.status(7, ttl=10)
    stale_id = cache.key_id_for(b"h" * 32, ttl=10)

    assert fresh == (True, status())
    assert fresh_id == 7
    assert stale == (False, None)
    assert stale_id is None


def test_the_status_cache_remembers_that_a_key_is_gone():
    cache = StatusCache()
    cache.remember(9, None)

    assert cache.status(9, ttl=10) == (True, None)
    assert cache.status(10, ttl=10) == (False, None)


def test_a_ttl_of_zero_disables_the_cache():
    cache = StatusCache()
    cache.remember(7, status())

    assert cache.status(7, ttl=0) == (False, None)


@pytest.fixture
def unreachable_database(set_env) -> None:
    """Nothing listens on port 1: any query fails at once with DatabaseUnavailable."""
    set_env(AUTH_CACHE_TTL_SECONDS="10")
    db.set_database(db.Database("postgresql://mdw@127.0.0.1:1/nowhere", connect_timeout=1))


def test_a_cached_key_is_verified_without_the_database(unreachable_database):
    container.current.key_statuses.remember(7, status(), key_hash=b"h" * 32)

    current = access.cached_credential(b"h" * 32, "mdw_current0")
    previous = access.cached_credential(b"h" * 32, "mdw_previous")
    by_id = access.cached_status(7)
    access.forget_statuses()

    assert current == (True, access.Credential(status(), access.CURRENT))
    assert previous == (True, access.Credential(status(), access.PREVIOUS))
    assert by_id == (True, status())
    # Without the cached entry the cache cannot answer, and the caller's connection must.
    assert access.cached_status(7) == (False, None)
    assert access.cached_credential(b"h" * 32, "mdw_current0") == (False, None)
    with pytest.raises(DatabaseUnavailable, match=r"^the database is unavailable; retry shortly$"):
        with db.connection() as conn:
            access.load_status(conn, 7)


def test_a_loaded_status_is_remembered_for_the_ttl(set_env, pinned_db):
    from tests.factories import make_key

    set_env(AUTH_CACHE_TTL_SECONDS="10")
    created = make_key(pinned_db)

    loaded = access.load_status(pinned_db, created.key.id)
    gone = access.load_status(pinned_db, created.key.id + 1000)

    assert loaded is not None
    assert loaded.id == created.key.id
    assert access.cached_status(created.key.id) == (True, loaded)
    assert gone is None
    assert access.cached_status(created.key.id + 1000) == (True, None)


def test_the_status_cache_keeps_at_most_its_bound_dropping_the_oldest_first():
    cache = StatusCache(max_entries=3)
    for key_id in (1, 2, 3):
        cache.remember(key_id, status(id=key_id), key_hash=bytes([key_id]) * 32)
    cache.remember(1, status(id=1), key_hash=b"\x01" * 32)  # stored again: the newest now
    cache.remember(4, status(id=4), key_hash=b"\x04" * 32)

    assert len(cache) == 3
    assert cache.status(2, ttl=10) == (False, None)  # the oldest went
    assert cache.key_id_for(b"\x02" * 32, ttl=10) is None
    assert [cache.status(k, ttl=10)[0] for k in (1, 3, 4)] == [True, True, True]
    assert cache.key_id_for(b"\x04" * 32, ttl=10) == 4


def test_the_container_bounds_the_status_cache():
    assert container.current.key_statuses.max_entries == 10_000


def test_parsed_allow_lists_are_cached_within_a_bound():
    networks = container.current.networks
    for n in range(networks.max_entries + 5):
        assert access.source_ip_allowed([f"10.{n // 256}.{n % 256}.0/24"], "192.0.2.1") is False

    assert len(networks) == networks.max_entries
    assert ("10.0.0.0/24",) not in networks  # the first ones went
    last = networks.max_entries + 4
    assert (f"10.{last // 256}.{last % 256}.0/24",) in networks


def test_the_cache_cannot_answer_for_a_hash_whose_key_status_went_from_the_bound(
    set_env, monkeypatch
):
    set_env(AUTH_CACHE_TTL_SECONDS="10")
    monkeypatch.setattr(container.current, "key_statuses", StatusCache(max_entries=1))
    container.current.key_statuses.remember(7, status(), key_hash=b"h" * 32)
    container.current.key_statuses.remember(8, status(id=8))  # 7's status goes, its hash stays

    assert container.current.key_statuses.key_id_for(b"h" * 32, ttl=10) == 7
    assert access.cached_credential(b"h" * 32, "mdw_current0") == (False, None)


def test_the_cache_answers_that_the_key_of_a_hash_is_gone(set_env):
    set_env(AUTH_CACHE_TTL_SECONDS="10")
    container.current.key_statuses.remember(7, status(), key_hash=b"h" * 32)
    container.current.key_statuses.remember(7, None)  # deleted since: load_status saw it gone

    assert access.cached_credential(b"h" * 32, "mdw_current0") == (True, None)


def test_a_loaded_credential_is_remembered_and_an_unknown_hash_is_not(set_env, pinned_db):
    from chalicelib.keys import tokens
    from tests.factories import make_key

    set_env(AUTH_CACHE_TTL_SECONDS="10")
    created = make_key(pinned_db)
    key_hash = tokens.hash_key(created.raw_key)
    prefix = tokens.display_prefix(created.raw_key)
    unknown_hash = tokens.hash_key(tokens.generate_key())

    loaded = access.load_credential(pinned_db, key_hash, prefix)
    unknown = access.load_credential(pinned_db, unknown_hash, prefix)

    assert loaded is not None
    assert loaded.status.id == created.key.id
    assert loaded.which == access.CURRENT
    assert access.cached_credential(key_hash, prefix) == (True, loaded)
    assert unknown is None
    assert access.cached_credential(unknown_hash, prefix) == (False, None)


def test_the_refusal_prefix_cap_is_the_documented_one():
    text = (PROJECT_ROOT / "docs" / "API_KEY_MANAGEMENT.md").read_text()
    documented = re.search(r"a minute records at most (\d+) prefixes one by one", text)

    assert documented is not None
    assert access.REFUSAL_PREFIXES_PER_MINUTE == int(documented.group(1))
