"""Shapes of API keys: rows, requests and responses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SCOPES = ("read", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
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


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key with its raw value: returned once, never stored."""

    key: ApiKey
    raw_key: str
