"""API key operations: the rules, independent of HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from chalicelib.keys import repository, tokens
from chalicelib.keys.models import CreatedKey

Connection = psycopg.Connection[Any]


def create_key(
    conn: Connection,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    allowed_cidrs: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    raw_key = tokens.generate_key()
    key = repository.insert_key(
        conn,
        name=name,
        key_hash=tokens.hash_key(raw_key),
        key_prefix=tokens.display_prefix(raw_key),
        scopes=scopes,
        expires_at=expires_at,
        allowed_cidrs=allowed_cidrs,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    return CreatedKey(key=key, raw_key=raw_key)
