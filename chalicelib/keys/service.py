"""API key operations: the rules, independent of HTTP.

Every change to a key writes a lifecycle row to the audit log in the caller's transaction, and
empties this process's key status cache (`access.forget_statuses`).
Usage counters (`request_count`, `last_used_at`) are never written per request: showing or
listing keys reads them (folded counters plus the audit rows not folded yet) without writing,
and only the archive job folds, before it deletes old audit rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from msgspec import UNSET, UnsetType

from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.keys import access, repository, tokens
from chalicelib.keys.access import utc_now
from chalicelib.keys.models import (
    MAX_CIDRS,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    SCOPES,
    Actor,
    ApiKey,
    AuditPage,
    AuditQuery,
    CreatedKey,
    UpdateKeyRequest,
)

Connection = psycopg.Connection[Any]

# Request rows younger than this are left for the next fold: an INSERT that has taken its id
# but not yet committed is invisible, and the fold must not move past it (reads count the rows
# above the fold's mark, so they see such a row once it commits).
USAGE_SETTLE_SECONDS = 5.0

# The latest instant PostgreSQL's timestamptz and Python's datetime both represent in UTC.
LATEST_EXPIRY = datetime(9999, 12, 31, tzinfo=UTC)


def normalize_scopes(scopes: list[str]) -> list[str]:
    """Known scopes, once each, in a fixed order."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise BadRequest(
            f"unknown scope(s): {', '.join(unknown)}; use {' and/or '.join(SCOPES)}",
            details={"scopes": unknown},
        )
    if not scopes:
        raise BadRequest("at least one scope is required", details={"scopes": []})
    return [scope for scope in SCOPES if scope in scopes]


def normalize_cidrs(cidrs: list[str]) -> list[str]:
    """Networks in canonical form; a host address (`10.1.2.3`) is its own /32 (or /128)."""
    if len(cidrs) > MAX_CIDRS:
        raise BadRequest(f"at most {MAX_CIDRS} CIDRs per key")
    networks = []
    for cidr in cidrs:
        try:
            if "%" in cidr:  # a scoped IPv6 zone: Python accepts it, PostgreSQL's cidr does not
                raise ValueError(cidr)
            network = ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError:
            raise BadRequest(
                f"{cidr[:64]!r} is not a CIDR such as 203.0.113.0/24 (host bits must be zero)",
                details={"allowed_cidrs": cidr[:64]},
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    return networks


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise BadRequest("expires_at needs a time zone, e.g. 2030-01-01T00:00:00Z")
    if expires_at <= now:
        raise BadRequest(
            "expires_at must be in the future", details={"expires_at": expires_at.isoformat()}
        )
    try:
        too_late = expires_at.astimezone(UTC) > LATEST_EXPIRY
    except OverflowError:  # past year 9999 once in UTC
        too_late = True
    if too_late:
        raise BadRequest(
            "expires_at must be before 9999-12-31T00:00:00Z",
            details={"expires_at": expires_at.isoformat()},
        )


def check_name(name: str) -> str:
    """The whole name must match NAME_PATTERN: the schema's `$` would let a trailing newline
    through, and a name is shown in terminals and log lines."""
    if not re.fullmatch(NAME_PATTERN.removeprefix("^").removesuffix("$"), name):
        raise BadRequest(
            "name may hold letters, digits, spaces and . _ : @ / + - and must start with a "
            "letter or digit",
            details={"name": name[:MAX_NAME_LENGTH]},
        )
    return name


def _record(conn: Connection, event: str, key: ApiKey, actor: Actor | None, detail: str) -> None:
    reason = detail
    if actor is not None:
        reason = f"{detail}; by {actor.who}" if detail else f"by {actor.who}"
    repository.insert_audit_event(
        conn,
        event=event,
        key_id=key.id,
        key_prefix=key.key_prefix,
        reason=reason or None,
        request_id=actor.request_id if actor else None,
        source_ip=actor.source_ip if actor else None,
    )


def create_key(
    conn: Connection,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    allowed_cidrs: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
    actor: Actor | None = None,
) -> CreatedKey:
    """A new key; its raw value is in the result and nowhere else."""
    check_expiry(expires_at, utc_now())
    raw_key = tokens.generate_key()
    key = repository.insert_key(
        conn,
        name=check_name(name),
        key_hash=tokens.hash_key(raw_key),
        key_prefix=tokens.display_prefix(raw_key),
        scopes=normalize_scopes(scopes),
        expires_at=expires_at,
        allowed_cidrs=normalize_cidrs(allowed_cidrs or []),
        rate_limit_per_minute=rate_limit_per_minute,
    )
    _record(conn, "created", key, actor, f"scopes {','.join(key.scopes)}")
    return CreatedKey(key=key, raw_key=raw_key)


def fold_usage(
    conn: Connection, *, key_id: int | None = None, settle_seconds: float = USAGE_SETTLE_SECONDS
) -> int:
    """Bring the stored usage counters up to date with the audit log (one key, or all). The
    archive job's, before it deletes rows; reads never fold."""
    return repository.fold_usage(conn, key_id=key_id, settle_seconds=settle_seconds)


def list_keys(conn: Connection, *, active_only: bool = False) -> list[ApiKey]:
    return repository.list_keys(conn, active_only=active_only)


def get_key(conn: Connection, key_id: int) -> ApiKey:
    key = repository.get_key(conn, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}", details={"id": key_id})
    return key


def _locked(conn: Connection, key_id: int) -> ApiKey:
    key = repository.get_key(conn, key_id, for_update=True)
    if key is None:
        raise NotFound(f"no API key with id {key_id}", details={"id": key_id})
    return key


def update_key(
    conn: Connection, key_id: int, changes: UpdateKeyRequest, *, actor: Actor | None = None
) -> ApiKey:
    """Apply the fields present in `changes`. Revoking a revoked key or restoring an active
    one changes nothing; restoring a key that has expired is refused unless the same change
    moves its expiry into the future."""
    current = _locked(conn, key_id)
    now = utc_now()
    name = current.name if changes.name is UNSET else check_name(changes.name)
    scopes = current.scopes if changes.scopes is UNSET else normalize_scopes(list(changes.scopes))
    expires_at = current.expires_at
    if changes.expires_at is not UNSET:
        check_expiry(changes.expires_at, now)
        expires_at = changes.expires_at
    allowed_cidrs = (
        current.allowed_cidrs
        if changes.allowed_cidrs is UNSET
        else normalize_cidrs(changes.allowed_cidrs)
    )
    rate_limit = (
        current.rate_limit_per_minute
        if changes.rate_limit_per_minute is UNSET
        else changes.rate_limit_per_minute
    )
    active = current.active if changes.active is UNSET else changes.active
    if changes.active is True and expires_at is not None and expires_at <= now:
        raise Conflict(
            f"API key {key_id} expired at {expires_at.isoformat()} and cannot be restored; "
            "send a later expires_at (or null) with active: true to restore it",
            details={"id": key_id, "expires_at": expires_at.isoformat()},
        )

    changed = [
        field
        for field, before, after in (
            ("name", current.name, name),
            ("scopes", current.scopes, scopes),
            ("expires_at", current.expires_at, expires_at),
            ("allowed_cidrs", current.allowed_cidrs, allowed_cidrs),
            ("rate_limit_per_minute", current.rate_limit_per_minute, rate_limit),
        )
        if before != after
    ]
    if not changed and active == current.active:
        return current

    updated = repository.update_key(
        conn,
        key_id,
        name=name,
        scopes=scopes,
        active=active,
        expires_at=expires_at,
        allowed_cidrs=allowed_cidrs,
        rate_limit_per_minute=rate_limit,
    )
    assert updated is not None  # the row is locked
    if active != current.active:
        _record(conn, "restored" if active else "revoked", updated, actor, "")
    if changed:
        _record(conn, "updated", updated, actor, f"changed {', '.join(changed)}")
    _forget_cached_statuses()
    return updated


def revoke_key(conn: Connection, key_id: int, *, actor: Actor | None = None) -> ApiKey:
    return update_key(conn, key_id, UpdateKeyRequest(active=False), actor=actor)


def restore_key(
    conn: Connection,
    key_id: int,
    *,
    expires_at: datetime | None | UnsetType = UNSET,
    actor: Actor | None = None,
) -> ApiKey:
    return update_key(
        conn, key_id, UpdateKeyRequest(active=True, expires_at=expires_at), actor=actor
    )


def rotate_key(
    conn: Connection, key_id: int, *, grace_seconds: int = 0, actor: Actor | None = None
) -> CreatedKey:
    """A new raw key for the same key (same id, name, scopes, expiry, CIDRs, rate limit). The
    old one keeps working for `grace_seconds`, never past the key's own expiry; a key rotated
    again during a grace period forgets the older key at once."""
    current = _locked(conn, key_id)
    now = utc_now()
    if current.expires_at is not None and current.expires_at <= now:
        raise Conflict(
            f"API key {key_id} expired at {current.expires_at.isoformat()}; "
            "give it a later expires_at before rotating it",
            details={"id": key_id},
        )
    previous_expires_at = None
    if grace_seconds > 0:
        previous_expires_at = now + timedelta(seconds=grace_seconds)
        if current.expires_at is not None:
            previous_expires_at = min(previous_expires_at, current.expires_at)
    raw_key = tokens.generate_key()
    rotated = repository.rotate_key(
        conn,
        key_id,
        key_hash=tokens.hash_key(raw_key),
        key_prefix=tokens.display_prefix(raw_key),
        previous_expires_at=previous_expires_at,
    )
    assert rotated is not None  # the row is locked
    _record(
        conn,
        "rotated",
        rotated,
        actor,
        f"replaced {current.key_prefix}, which works for {grace_seconds}s more",
    )
    _forget_cached_statuses()
    return CreatedKey(key=rotated, raw_key=raw_key)


def delete_key(conn: Connection, key_id: int, *, actor: Actor | None = None) -> None:
    """Remove the key for good. Its audit rows stay, and so does the record of the deletion."""
    current = _locked(conn, key_id)
    repository.delete_key(conn, key_id)
    _record(conn, "deleted", current, actor, f"name {current.name}")
    _forget_cached_statuses()


def _forget_cached_statuses() -> None:
    """Every change to a key empties this process's status cache, whoever made the change (an
    admin route, `mdw keys`): the next check here reads the key again, other containers within
    AUTH_CACHE_TTL_SECONDS. It runs before the caller commits, so a check racing the commit may
    keep the old status, but never for longer than that same TTL."""
    access.forget_statuses()


def _filter_fingerprint(key_id: int, query: AuditQuery) -> str:
    """Ties a cursor to the listing it came from: same key, same filters."""
    filters = (
        key_id,
        query.since.isoformat() if query.since else None,
        query.until.isoformat() if query.until else None,
        query.status,
        query.route,
        query.event,
    )
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def encode_cursor(before_id: int, fingerprint: str) -> str:
    raw = f"{before_id}.{fingerprint}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> int:
    """The id to continue below; BadRequest for anything this listing did not hand out."""
    invalid = BadRequest(
        "cursor is not valid for this listing: pass next_cursor from the previous page "
        "with the same filters",
        details={"cursor": cursor[:40]},
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        before, _, mark = base64.urlsafe_b64decode(padded.encode("ascii")).decode().partition(".")
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid from None
    if mark != fingerprint or not before.isdigit() or len(before) > 18 or int(before) <= 0:
        raise invalid
    return int(before)


def audit_page(conn: Connection, key_id: int, query: AuditQuery) -> AuditPage:
    """A key's audit rows, newest first. Available after the key is deleted: the history of a
    key that never existed is the only 404."""
    fingerprint = _filter_fingerprint(key_id, query)
    before_id = decode_cursor(query.cursor, fingerprint) if query.cursor else None
    if not repository.key_has_history(conn, key_id):
        raise NotFound(f"no API key with id {key_id}", details={"id": key_id})
    rows = repository.get_audit_page(
        conn,
        key_id,
        limit=query.limit + 1,
        before_id=before_id,
        since=query.since,
        until=query.until,
        status=query.status,
        route=query.route,
        event=query.event,
    )
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_cursor = encode_cursor(rows[-1].id, fingerprint)
    return AuditPage(key_id=key_id, items=rows, next_cursor=next_cursor)
