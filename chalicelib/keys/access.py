"""Who may do what with a key, decided the same way by the authorizer and the middleware.

Both read a key's status through one in-container cache (`container.current.key_statuses`) whose
entries live for `AUTH_CACHE_TTL_SECONDS`: that TTL is how long a revocation can take to reach a
warm container. The keys service empties it whenever it changes a key.
The authorizer finds a key by the hash of the presented token; the middleware, which only sees
the authorizer's context, by id. The display prefix of the presented token tells the key's
current credential from the one in its rotation grace period.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import msgspec

from chalicelib import container
from chalicelib.config import get_settings
from chalicelib.db import Connection
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

IpNetwork = container.IpNetwork
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


def _networks(cidrs: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """Parsed allow-lists, kept in the container's bounded `networks` cache."""
    return container.current.networks.get_or_create(
        cidrs, lambda: tuple(ipaddress.ip_network(cidr) for cidr in cidrs)
    )


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


def _ttl() -> float:
    return float(get_settings().auth_cache_ttl_seconds)


# Reading a status is split in two so that the caller, the boundary, opens the connection, and
# only when the cache cannot answer: `cached_…` never touches the database, `load_…` runs one
# query on the caller's connection and remembers the answer for the TTL.


def cached_status(key_id: int) -> tuple[bool, KeyStatus | None]:
    """(found, status) from the cache; a fresh entry may say the key is gone (None)."""
    return container.current.key_statuses.status(key_id, ttl=_ttl())


def load_status(conn: Connection, key_id: int) -> KeyStatus | None:
    """The key's status (None: it no longer exists), from one query; remembered."""
    status = repository.get_status_by_id(conn, key_id)
    container.current.key_statuses.remember(key_id, status)
    return status


def cached_credential(key_hash: bytes, presented_prefix: str) -> tuple[bool, Credential | None]:
    """(found, credential) from the cache for a presented token's hash."""
    statuses = container.current.key_statuses
    ttl = _ttl()
    key_id = statuses.key_id_for(key_hash, ttl=ttl)
    if key_id is None:
        return False, None
    found, status = statuses.status(key_id, ttl=ttl)
    if not found:
        return False, None
    # The hash was this key's when it was looked up; the fresh status says whether it still is
    # (a second rotation forgets it) and whether the key is still usable.
    if status is None:
        return True, None
    return True, Credential(status, credential_for(status, presented_prefix))


def load_credential(conn: Connection, key_hash: bytes, presented_prefix: str) -> Credential | None:
    """The key a token belongs to (current or rotated-out), from one query; remembered.
    None when no key has this hash."""
    status = repository.get_status_by_hash(conn, key_hash)
    if status is None:
        return None
    container.current.key_statuses.remember(status.id, status, key_hash=key_hash)
    return Credential(status, credential_for(status, presented_prefix))


def forget_statuses() -> None:
    """After a key changes: this container's next check reads it again (others within the
    TTL)."""
    container.current.key_statuses.clear()
