"""Who may do what with a key, decided the same way by the authorizer and the middleware.

Both read a key's status through one in-container cache whose entries live for
`AUTH_CACHE_TTL_SECONDS`: that TTL is how long a revocation can take to reach a warm container.
The authorizer finds a key by the hash of the presented token; the middleware, which only sees
the authorizer's context, by id. The display prefix of the presented token tells the key's
current credential from the one in its rotation grace period.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from datetime import UTC, datetime
from functools import cache

import msgspec
import psycopg

from chalicelib import db
from chalicelib.config import get_settings
from chalicelib.errors import DatabaseUnavailable
from chalicelib.keys import repository
from chalicelib.keys.models import KeyStatus

ADMIN_PREFIX = "/api/v1/admin/"
CURRENT = "current"
PREVIOUS = "previous"

# Reasons recorded with refused requests.
REASON_UNKNOWN = "unknown_key"
REASON_REVOKED = "revoked"
REASON_EXPIRED = "expired"
REASON_DELETED = "deleted"
REASON_ROTATED = "rotated_out"
REASON_SCOPE = "scope_not_allowed"
REASON_SOURCE_IP = "source_ip_not_allowed"
REASON_RATE_LIMITED = "rate_limited"

# Refusals of keys that do not exist are counted per minute; a minute records this many display
# prefixes one by one, and counts the rest together (docs: API_KEY_MANAGEMENT.md).
REFUSAL_PREFIXES_PER_MINUTE = 100

KEY_CHECK_UNAVAILABLE = "the API key could not be checked: the database is unavailable"

_MAX_CACHED = 10_000

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Credential(msgspec.Struct, frozen=True):
    """A key status and which of its credentials the caller presented."""

    status: KeyStatus
    which: str | None  # CURRENT, PREVIOUS, or None when it is neither any more


def credential_for(status: KeyStatus, presented_prefix: str) -> str | None:
    """CURRENT or PREVIOUS when the presented key is one of this key's, else None."""
    if presented_prefix == status.key_prefix:
        return CURRENT
    if presented_prefix == status.previous_key_prefix:
        return PREVIOUS
    return None


def refusal_reason(status: KeyStatus | None, which: str | None, now: datetime) -> str | None:
    """Why this credential may not be used at `now`, or None when it may."""
    if status is None:
        return REASON_DELETED
    if not status.active:
        return REASON_REVOKED
    if status.expires_at is not None and status.expires_at <= now:
        return REASON_EXPIRED
    if which == CURRENT:
        return None
    if which == PREVIOUS and (
        status.previous_key_expires_at is not None and status.previous_key_expires_at > now
    ):
        return None
    return REASON_ROTATED


def reaches_route(scopes: list[str], route: str) -> bool:
    """`admin` reaches every route; `read` every route outside the admin prefix."""
    return "admin" in scopes or not route.startswith(ADMIN_PREFIX)


@cache
def _networks(cidrs: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def source_ip_allowed(allowed_cidrs: list[str], source_ip: str | None) -> bool:
    """No CIDRs: any source. Otherwise the source must parse and fall inside one of them."""
    if not allowed_cidrs:
        return True
    if source_ip is None:
        return False
    try:
        address: IpAddress = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(
        address.version == network.version and address in network
        for network in _networks(tuple(allowed_cidrs))
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class StatusCache:
    """Key statuses by id, and key ids by token hash, each trusted for `ttl` seconds.

    Shared by the request threads of a container (Chalice's local server is threaded).
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[float, KeyStatus | None]] = {}
        self._id_by_hash: dict[bytes, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._monotonic = time.monotonic

    def status(self, key_id: int, *, ttl: float) -> tuple[bool, KeyStatus | None]:
        """(found, status): a fresh entry may say the key no longer exists (status None)."""
        entry = self._by_id.get(key_id)
        if entry is None or self._monotonic() - entry[0] >= ttl:
            return False, None
        return True, entry[1]

    def key_id_for(self, key_hash: bytes, *, ttl: float) -> int | None:
        entry = self._id_by_hash.get(key_hash)
        if entry is None or self._monotonic() - entry[0] >= ttl:
            return None
        return entry[1]

    def remember(
        self, key_id: int, status: KeyStatus | None, *, key_hash: bytes | None = None
    ) -> None:
        now = self._monotonic()
        with self._lock:
            if len(self._by_id) >= _MAX_CACHED or len(self._id_by_hash) >= _MAX_CACHED:
                self._by_id.clear()
                self._id_by_hash.clear()
            self._by_id[key_id] = (now, status)
            if key_hash is not None:
                self._id_by_hash[key_hash] = (now, key_id)

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._id_by_hash.clear()


statuses = StatusCache()


def _ttl() -> float:
    return float(get_settings().auth_cache_ttl_seconds)


def status_by_id(key_id: int) -> KeyStatus | None:
    """The key's status (None: it no longer exists), from the cache or one query."""
    ttl = _ttl()
    found, status = statuses.status(key_id, ttl=ttl)
    if found:
        return status
    try:
        with db.connection() as conn:
            status = repository.get_status_by_id(conn, key_id)
    except psycopg.OperationalError:
        raise DatabaseUnavailable(KEY_CHECK_UNAVAILABLE) from None
    statuses.remember(key_id, status)
    return status


def credential_by_hash(key_hash: bytes, presented_prefix: str) -> Credential | None:
    """The key a token belongs to (current or rotated-out), from the cache or one query.
    None when no key has this hash."""
    ttl = _ttl()
    key_id = statuses.key_id_for(key_hash, ttl=ttl)
    if key_id is not None:
        found, status = statuses.status(key_id, ttl=ttl)
        if found:
            # The hash was this key's when it was looked up; the fresh status says whether it
            # still is (a second rotation forgets it) and whether the key is still usable.
            if status is None:
                return None
            return Credential(status, credential_for(status, presented_prefix))
    try:
        with db.connection() as conn:
            status = repository.get_status_by_hash(conn, key_hash)
    except psycopg.OperationalError:
        raise DatabaseUnavailable(KEY_CHECK_UNAVAILABLE) from None
    if status is None:
        return None
    statuses.remember(status.id, status, key_hash=key_hash)
    return Credential(status, credential_for(status, presented_prefix))
