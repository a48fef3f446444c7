"""All SQL for API keys. Functions take a connection and never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.errors import Conflict
from chalicelib.keys.models import ApiKey

Connection = psycopg.Connection[Any]

KEY_COLUMNS = """
    id, name, key_prefix, scopes, active, expires_at,
    coalesce(allowed_cidrs::text[], '{}') AS allowed_cidrs, rate_limit_per_minute,
    created_at, updated_at, last_used_at, request_count
"""

INSERT_KEY = f"""
INSERT INTO api_keys (name, key_hash, key_prefix, scopes, expires_at, allowed_cidrs,
                      rate_limit_per_minute)
VALUES (%(name)s, %(key_hash)s, %(key_prefix)s, %(scopes)s, %(expires_at)s,
        %(allowed_cidrs)s::cidr[], %(rate_limit_per_minute)s)
RETURNING {KEY_COLUMNS}
"""

SELECT_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = %(key_hash)s"

HAS_ACTIVE_ADMIN_KEY = """
SELECT EXISTS (
    SELECT 1 FROM api_keys
    WHERE active AND 'admin' = ANY(scopes) AND (expires_at IS NULL OR expires_at > now())
)
"""

LOCK_KEYS_FOR_BOOTSTRAP = "LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE"

SELECT_NAMES_STARTING_WITH = """
SELECT name FROM api_keys WHERE starts_with(name, %(prefix)s) ORDER BY name
"""


def insert_key(
    conn: Connection,
    *,
    name: str,
    key_hash: bytes,
    key_prefix: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    allowed_cidrs: list[str] | None = None,
    rate_limit_per_minute: int | None = None,
) -> ApiKey:
    params = {
        "name": name,
        "key_hash": key_hash,
        "key_prefix": key_prefix,
        "scopes": scopes,
        "expires_at": expires_at,
        "allowed_cidrs": allowed_cidrs or [],
        "rate_limit_per_minute": rate_limit_per_minute,
    }
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(ApiKey)) as cur:
            row = cur.execute(INSERT_KEY, params).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "api_keys_name_key":
            raise Conflict(f"an API key named {name!r} already exists") from None
        raise
    assert row is not None
    return row


def get_key_by_hash(conn: Connection, key_hash: bytes) -> ApiKey | None:
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(SELECT_KEY_BY_HASH, {"key_hash": key_hash}).fetchone()


def has_active_admin_key(conn: Connection) -> bool:
    row = conn.execute(HAS_ACTIVE_ADMIN_KEY).fetchone()
    return bool(row and row[0])


def lock_keys_for_bootstrap(conn: Connection) -> None:
    """Until the transaction ends, no other bootstrap can check for or create a key."""
    conn.execute(LOCK_KEYS_FOR_BOOTSTRAP)


def names_starting_with(conn: Connection, prefix: str) -> list[str]:
    return [row[0] for row in conn.execute(SELECT_NAMES_STARTING_WITH, {"prefix": prefix})]
