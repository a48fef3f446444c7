"""Shapes of API keys: rows, requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import UNSET, Meta, UnsetType

SCOPES = ("read", "admin")
# Kept printable and free of quotes so a name is safe to show in a terminal, a log line or a
# shell command without escaping.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:@/+-]*$"
MAX_NAME_LENGTH = 100
MAX_CIDRS = 100
MAX_RATE_LIMIT_PER_MINUTE = 1_000_000
MAX_GRACE_SECONDS = 30 * 24 * 3600
MAX_AUDIT_PAGE = 1000
DEFAULT_AUDIT_PAGE = 100

# Audit events. `request`: a request that passed the authorizer (the middleware sets `reason`
# when it refused the request itself); `auth_failed`: a key that was refused (authorizer, or
# the middleware's status re-check); the rest record the key's lifecycle.
AuditEvent = Literal[
    "request", "auth_failed", "created", "updated", "revoked", "restored", "rotated", "deleted"
]
AUDIT_EVENTS: tuple[str, ...] = get_args(AuditEvent)
EVENT_REQUEST = "request"
EVENT_AUTH_FAILED = "auth_failed"

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
Scope = Literal["read", "admin"]
Scopes = Annotated[list[Scope], Meta(min_length=1, max_length=len(SCOPES))]
Cidrs = Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=MAX_CIDRS)]
RateLimit = Annotated[int, Meta(ge=1, le=MAX_RATE_LIMIT_PER_MINUTE)]
AwareTime = Annotated[datetime, Meta(tz=True)]


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An `api_keys` row without its hashes: nothing here is secret."""

    id: int
    name: str
    key_prefix: str
    scopes: list[str]
    active: bool
    expires_at: datetime | None
    allowed_cidrs: list[str]
    rate_limit_per_minute: int | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    request_count: int
    previous_key_prefix: str | None
    previous_key_expires_at: datetime | None

    def state(self, now: datetime) -> str:
        """`active`, `revoked` or `expired` (revocation wins: it is the operator's choice)."""
        if not self.active:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class CreatedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new key with its raw value: returned once, never stored."""

    key: ApiKey
    raw_key: str


class KeyStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the authorizer and the middleware need to decide on a request; cached per
    container for `AUTH_CACHE_TTL_SECONDS`."""

    id: int
    scopes: list[str]
    active: bool
    expires_at: datetime | None
    allowed_cidrs: list[str]
    rate_limit_per_minute: int | None
    key_prefix: str
    previous_key_prefix: str | None
    previous_key_expires_at: datetime | None


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """One `api_key_audit` row, as the audit endpoint shows it and the archive job reads it.
    `event`: request, auth_failed, or a lifecycle event; `reason`: why a request was refused,
    or who changed the key."""

    id: int
    key_id: int | None
    occurred_at: datetime
    event: str
    method: str | None
    route: str | None
    path: str | None
    status_code: int | None
    latency_ms: int | None
    source_ip: str | None
    request_id: str | None
    key_prefix: str | None
    reason: str | None
    # How many attempts the row stands for: 1, or more on the per-minute row of refusals of
    # keys that do not exist (those have no key_id, so no key's audit page shows them).
    attempts: int = 1


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The audit facts of one request, gathered by the middleware."""

    key_id: int
    key_prefix: str | None
    method: str
    route: str
    path: str
    status_code: int
    latency_ms: int
    source_ip: str | None
    request_id: str | None
    reason: str | None = None


class RateWindow(msgspec.Struct, frozen=True, kw_only=True):
    """What the rate-limit statement learned: requests in the last minute including this one,
    and how many seconds until the oldest of the newest `limit` of them leaves the window."""

    used: int
    seconds_until_slot: float


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    key_id: int
    items: list[AuditRow]
    next_cursor: str | None


class CreateKeyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    scopes: Scopes
    expires_at: AwareTime | None = None
    allowed_cidrs: Cidrs = msgspec.field(default_factory=list)
    rate_limit_per_minute: RateLimit | None = None


class UpdateKeyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every field optional; an absent field is left as it is, `null` clears the optional
    ones (no expiry, no rate limit)."""

    active: bool | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    scopes: Scopes | UnsetType = UNSET
    expires_at: AwareTime | None | UnsetType = UNSET
    allowed_cidrs: Cidrs | UnsetType = UNSET
    rate_limit_per_minute: RateLimit | None | UnsetType = UNSET


class RotateKeyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # 0: the old key stops at once (a leaked key). Give clients time to switch otherwise.
    grace_seconds: Annotated[int, Meta(ge=0, le=MAX_GRACE_SECONDS)] = 0


class ListKeysQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    active_only: bool = False


class AuditQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    since: AwareTime | None = None
    until: AwareTime | None = None
    status: Annotated[int, Meta(ge=100, le=599)] | None = None
    route: Annotated[str, Meta(min_length=1, max_length=300)] | None = None
    event: AuditEvent | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_AUDIT_PAGE)] = DEFAULT_AUDIT_PAGE
    cursor: Annotated[str, Meta(max_length=200)] | None = None


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who changed a key, for the lifecycle rows of the audit log."""

    who: str
    request_id: str | None = None
    source_ip: str | None = None


KeyState = Literal["active", "revoked", "expired"]


class KeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """An API key's settings, state and usage. Never a hash, never the raw key."""

    id: int
    name: str
    key_prefix: str
    scopes: list[str]
    status: KeyState
    active: bool
    expires_at: datetime | None
    allowed_cidrs: list[str]
    rate_limit_per_minute: int | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    request_count: int
    previous_key_prefix: str | None
    previous_key_expires_at: datetime | None

    @classmethod
    def fields_of(cls, key: ApiKey, now: datetime) -> dict[str, object]:
        return {
            "id": key.id,
            "name": key.name,
            "key_prefix": key.key_prefix,
            "scopes": key.scopes,
            "status": key.state(now),
            "active": key.active,
            "expires_at": key.expires_at,
            "allowed_cidrs": key.allowed_cidrs,
            "rate_limit_per_minute": key.rate_limit_per_minute,
            "created_at": key.created_at,
            "updated_at": key.updated_at,
            "last_used_at": key.last_used_at,
            "request_count": key.request_count,
            "previous_key_prefix": key.previous_key_prefix,
            "previous_key_expires_at": key.previous_key_expires_at,
        }

    @classmethod
    def from_key(cls, key: ApiKey, now: datetime) -> KeyOut:
        return cls(**cls.fields_of(key, now))  # type: ignore[arg-type]


class CreatedKeyOut(KeyOut, frozen=True, kw_only=True):
    """A key with its raw value (`api_key`): only in the create and rotate responses."""

    api_key: str
    note: str = "store api_key now: it is shown only in this response"

    @classmethod
    def from_created(cls, created: CreatedKey, now: datetime) -> CreatedKeyOut:
        fields = cls.fields_of(created.key, now)
        return cls(**fields, api_key=created.raw_key)  # type: ignore[arg-type]


class KeyList(msgspec.Struct, frozen=True):
    items: list[KeyOut]
    count: int


class AuditPageOut(msgspec.Struct, frozen=True):
    """Newest first; pass `next_cursor` as `cursor` (with the same filters) for the next page."""

    key_id: int
    items: list[AuditRow]
    next_cursor: str | None
