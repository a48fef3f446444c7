"""All SQL for API keys and their audit log. Functions take a connection and never commit."""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.errors import Conflict
from chalicelib.keys.models import (
    EVENT_AUTH_FAILED,
    EVENT_REQUEST,
    ApiKey,
    AuditRow,
    KeyStatus,
    RateWindow,
    RequestRecord,
)

Connection = psycopg.Connection[Any]

# Usage is the counters the archive job folded in, plus the request rows it has not folded yet
# (above `usage_counted_through`), read through the partial index api_key_audit_requests_idx.
# Reading it takes no lock and writes nothing, so listings cannot contend with each other or
# with changes to a key (docs: API_KEY_MANAGEMENT.md, "Usage counters").
_UNFOLDED_REQUESTS = f"""
    FROM api_key_audit u
    WHERE u.key_id = k.id AND u.event = '{EVENT_REQUEST}' AND u.id > k.usage_counted_through
"""

KEY_COLUMNS = f"""
    k.id, k.name, k.key_prefix, k.scopes, k.active, k.expires_at,
    coalesce(k.allowed_cidrs::text[], '{{}}') AS allowed_cidrs, k.rate_limit_per_minute,
    k.created_at, k.updated_at,
    greatest(k.last_used_at,
             (SELECT u.occurred_at {_UNFOLDED_REQUESTS} ORDER BY u.id DESC LIMIT 1)
    ) AS last_used_at,
    k.request_count + (SELECT count(*) {_UNFOLDED_REQUESTS}) AS request_count,
    k.previous_key_prefix, k.previous_key_expires_at
"""

STATUS_COLUMNS = """
    id, scopes, active, expires_at, allowed_cidrs::text[] AS allowed_cidrs,
    rate_limit_per_minute, key_prefix, previous_key_prefix, previous_key_expires_at
"""

AUDIT_COLUMNS = """
    id, key_id, occurred_at, event, method, route, path, status_code, latency_ms,
    host(source_ip) AS source_ip, request_id, key_prefix, reason, attempts
"""

INSERT_KEY = f"""
INSERT INTO api_keys AS k (name, key_hash, key_prefix, scopes, expires_at, allowed_cidrs,
                      rate_limit_per_minute)
VALUES (%(name)s, %(key_hash)s, %(key_prefix)s, %(scopes)s, %(expires_at)s,
        %(allowed_cidrs)s::cidr[], %(rate_limit_per_minute)s)
RETURNING {KEY_COLUMNS}
"""

SELECT_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = %(id)s"

SELECT_KEY_FOR_UPDATE = f"""
SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = %(id)s FOR UPDATE OF k
"""

# `active_only`: keys that would authenticate now (neither revoked nor expired).
SELECT_KEYS = f"""
SELECT {KEY_COLUMNS} FROM api_keys k
WHERE NOT %(active_only)s OR (k.active AND (k.expires_at IS NULL OR k.expires_at > now()))
ORDER BY k.id
"""

UPDATE_KEY = f"""
UPDATE api_keys AS k
SET name = %(name)s,
    scopes = %(scopes)s,
    active = %(active)s,
    expires_at = %(expires_at)s,
    allowed_cidrs = %(allowed_cidrs)s::cidr[],
    rate_limit_per_minute = %(rate_limit_per_minute)s,
    -- The rotated-out key never outlives the key itself.
    previous_key_expires_at = CASE
        WHEN previous_key_hash IS NULL THEN NULL
        ELSE least(previous_key_expires_at, %(expires_at)s)
    END,
    updated_at = now()
WHERE k.id = %(id)s
RETURNING {KEY_COLUMNS}
"""

# The current key becomes the previous one until `previous_expires_at`; with no grace period
# the old key is forgotten at once.
ROTATE_KEY = f"""
UPDATE api_keys AS k
SET previous_key_hash = CASE WHEN %(previous_expires_at)s::timestamptz IS NULL
                             THEN NULL ELSE key_hash END,
    previous_key_prefix = CASE WHEN %(previous_expires_at)s::timestamptz IS NULL
                               THEN NULL ELSE key_prefix END,
    previous_key_expires_at = %(previous_expires_at)s,
    key_hash = %(key_hash)s,
    key_prefix = %(key_prefix)s,
    updated_at = now()
WHERE k.id = %(id)s
RETURNING {KEY_COLUMNS}
"""

DELETE_KEY = "DELETE FROM api_keys WHERE id = %(id)s RETURNING id"

# A token is looked up by the current hash first (one unique-index probe: the common case),
# and only when that finds nothing by the previous hash (a key in its rotation grace period).
# (One statement for both, a UNION ALL with LIMIT 1, measured ~25% slower for the common case.)
SELECT_STATUS_BY_HASH = f"SELECT {STATUS_COLUMNS} FROM api_keys WHERE key_hash = %(key_hash)s"

SELECT_STATUS_BY_PREVIOUS_HASH = f"""
SELECT {STATUS_COLUMNS} FROM api_keys WHERE previous_key_hash = %(key_hash)s
"""

SELECT_STATUS_BY_ID = f"SELECT {STATUS_COLUMNS} FROM api_keys WHERE id = %(id)s"

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

_AUDIT_INSERT_COLUMNS = """
INSERT INTO api_key_audit (key_id, occurred_at, event, method, route, path, status_code,
                           latency_ms, source_ip, request_id, key_prefix, reason)
"""

_AUDIT_VALUES = """
%(key_id)s::bigint, clock_timestamp(), %(event)s, %(method)s, %(route)s, %(path)s,
%(status_code)s::smallint, %(latency_ms)s::int, %(source_ip)s::inet, %(request_id)s,
%(key_prefix)s, %(reason)s
"""

# A lifecycle row: written in the caller's transaction, as durable as the change it records.
INSERT_AUDIT_EVENT = f"{_AUDIT_INSERT_COLUMNS} VALUES ({_AUDIT_VALUES})"

# The audit row of a request, a statement of its own (autocommit). Its commit does not wait for
# the WAL to reach disk: set_config(..., true) is SET LOCAL for this one statement's implicit
# transaction, read when it commits. A crash of the database server can lose the last moments
# of these rows (never a business write: those are other transactions); nothing is corrupted.
# Run it only on its own, never inside a transaction that writes anything else.
RELAXED_AUDIT_INSERT = f"""
{_AUDIT_INSERT_COLUMNS}
SELECT {_AUDIT_VALUES}
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
"""

# The same row, written again after the connection was lost during the first attempt: that
# INSERT may have committed before the connection died, so this one writes the row only if the
# request's own id is not in the audit log yet (searched among the last minutes' rows, where a
# first attempt can be). Never used for a request without an id.
RELAXED_AUDIT_INSERT_ONCE = f"""
{RELAXED_AUDIT_INSERT}
WHERE NOT EXISTS (
    SELECT 1 FROM api_key_audit
    WHERE key_id = %(key_id)s AND request_id = %(request_id)s AND event = %(event)s
      AND occurred_at > clock_timestamp() - interval '10 minutes'
)
"""

# A request of a key with a rate limit: write its audit row and, in the same round trip,
# count the key's other requests of the last minute that reached a view (at most limit - 1 of
# them: all the decision needs). The CTE's INSERT is invisible to its own SELECT, hence + 1.
RECORD_REQUEST_IN_WINDOW = f"""
WITH recorded AS (
    {RELAXED_AUDIT_INSERT}
    RETURNING occurred_at
), earlier AS (
    SELECT occurred_at FROM api_key_audit
    WHERE key_id = %(key_id)s AND event = '{EVENT_REQUEST}' AND reason IS NULL
      AND occurred_at > clock_timestamp() - interval '1 minute'
    ORDER BY occurred_at DESC
    LIMIT %(earlier_needed)s
)
SELECT
    (SELECT count(*) FROM earlier)::int + 1 AS used,
    extract(epoch FROM
        coalesce((SELECT min(occurred_at) FROM earlier), (SELECT occurred_at FROM recorded))
        + interval '1 minute' - clock_timestamp()
    )::float8 AS seconds_until_slot
"""

# Fold a key's request rows written since the last fold into its counters. Only rows older
# than the settle time are folded, and never past the first younger one: a row whose INSERT
# has not committed yet is invisible here, and must not fall behind `usage_counted_through`.
# The `counted_from` check makes a concurrent fold of the same key a no-op, not a double count.
# Only the archive job folds; it locks the keys in id order, as a change to one key (which
# locks that one row) cannot deadlock with it, nor can two folds with each other.
FOLD_USAGE = f"""
WITH cutoff AS (
    SELECT clock_timestamp() - make_interval(secs => %(settle_seconds)s) AS at
), candidate AS (
    SELECT k.id, k.usage_counted_through AS counted_from,
           (SELECT min(y.id) FROM api_key_audit y, cutoff
            WHERE y.key_id = k.id AND y.id > k.usage_counted_through
              AND y.event = '{EVENT_REQUEST}' AND y.occurred_at >= cutoff.at) AS first_unsettled
    FROM api_keys k
    WHERE %(key_id)s::bigint IS NULL OR k.id = %(key_id)s
    ORDER BY k.id
    FOR UPDATE OF k
), pending AS (
    SELECT c.id, c.counted_from, count(*) AS requests, max(a.occurred_at) AS last_used,
           max(a.id) AS counted_through
    FROM candidate c
    JOIN api_key_audit a ON a.key_id = c.id AND a.id > c.counted_from
    WHERE a.event = '{EVENT_REQUEST}'
      AND (c.first_unsettled IS NULL OR a.id < c.first_unsettled)
    GROUP BY c.id, c.counted_from
)
UPDATE api_keys k
SET request_count = k.request_count + p.requests,
    last_used_at = greatest(k.last_used_at, p.last_used),
    usage_counted_through = p.counted_through
FROM pending p
WHERE k.id = p.id AND k.usage_counted_through = p.counted_from
"""

# A refusal of a key that does not exist: one row per UTC minute, display prefix, reason and
# source address, whose `attempts` counts them (an upsert), so a flood of made-up keys adds rows
# by the minute, not by the request. A minute records at most `prefixes_per_minute` prefixes
# one by one (made-up keys all have different ones); later new prefixes of that minute are
# counted in its row with no prefix and no source. Concurrent first attempts of a minute can
# each add a prefix row before seeing the others', so the cap can be passed by the number of
# requests in flight, never by a flood's size. Relaxed commit, as for request rows.
RECORD_UNKNOWN_KEY_REFUSAL = f"""
WITH attempt AS (
    SELECT date_trunc('minute', clock_timestamp(), 'UTC') AS minute
), bucket AS (
    SELECT a.minute,
           (EXISTS (SELECT 1 FROM api_key_audit r
                    WHERE r.aggregate_minute = a.minute AND r.key_prefix = %(key_prefix)s
                      AND r.reason = %(reason)s
                      AND r.source_ip IS NOT DISTINCT FROM %(source_ip)s::inet)
            OR (SELECT count(*) FROM (SELECT 1 FROM api_key_audit r
                                      WHERE r.aggregate_minute = a.minute
                                        AND r.key_prefix IS NOT NULL
                                      LIMIT %(prefixes_per_minute)s) AS recorded)
               < %(prefixes_per_minute)s) AS own_row
    FROM attempt a
)
INSERT INTO api_key_audit AS r (event, occurred_at, method, path, status_code, source_ip,
                                key_prefix, reason, aggregate_minute)
SELECT '{EVENT_AUTH_FAILED}', clock_timestamp(), %(method)s, %(path)s, %(status_code)s::smallint,
       CASE WHEN b.own_row THEN %(source_ip)s::inet END,
       CASE WHEN b.own_row THEN %(key_prefix)s END,
       %(reason)s, b.minute
FROM bucket b, (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
ON CONFLICT (aggregate_minute, key_prefix, reason, source_ip) WHERE aggregate_minute IS NOT NULL
DO UPDATE SET attempts = r.attempts + 1
"""

SELECT_AUDIT_PAGE = f"""
SELECT {AUDIT_COLUMNS} FROM api_key_audit
WHERE key_id = %(key_id)s
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
  AND (%(since)s::timestamptz IS NULL OR occurred_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR occurred_at < %(until)s)
  AND (%(status)s::int IS NULL OR status_code = %(status)s)
  AND (%(route)s::text IS NULL OR route = %(route)s)
  AND (%(event)s::text IS NULL OR event = %(event)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

KEY_HAS_HISTORY = """
SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = %(key_id)s)
    OR EXISTS (SELECT 1 FROM api_key_audit WHERE key_id = %(key_id)s)
"""

SELECT_AUDIT_ROWS_BEFORE = f"""
SELECT {AUDIT_COLUMNS} FROM api_key_audit
WHERE occurred_at < %(cutoff)s AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
"""

DELETE_AUDIT_ROWS = """
DELETE FROM api_key_audit
WHERE id BETWEEN %(first_id)s AND %(last_id)s AND occurred_at < %(cutoff)s
"""


def _name_conflict(exc: psycopg.errors.UniqueViolation, name: str) -> Conflict | None:
    if exc.diag.constraint_name == "api_keys_name_key":
        return Conflict(f"an API key named {name!r} already exists", details={"name": name})
    return None


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
        # A savepoint, so a duplicate name leaves the caller's transaction usable.
        with conn.transaction(), conn.cursor(row_factory=class_row(ApiKey)) as cur:
            row = cur.execute(INSERT_KEY, params).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        conflict = _name_conflict(exc, name)
        if conflict:
            raise conflict from None
        raise
    assert row is not None
    return row


def get_key(conn: Connection, key_id: int, *, for_update: bool = False) -> ApiKey | None:
    """One key; `for_update` locks its row until the transaction ends."""
    query = SELECT_KEY_FOR_UPDATE if for_update else SELECT_KEY
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(query, {"id": key_id}).fetchone()


def list_keys(conn: Connection, *, active_only: bool = False) -> list[ApiKey]:
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(SELECT_KEYS, {"active_only": active_only}).fetchall()


def update_key(
    conn: Connection,
    key_id: int,
    *,
    name: str,
    scopes: list[str],
    active: bool,
    expires_at: datetime | None,
    allowed_cidrs: list[str],
    rate_limit_per_minute: int | None,
) -> ApiKey | None:
    """Write every mutable field (the caller merges the change into the current row)."""
    params = {
        "id": key_id,
        "name": name,
        "scopes": scopes,
        "active": active,
        "expires_at": expires_at,
        "allowed_cidrs": allowed_cidrs,
        "rate_limit_per_minute": rate_limit_per_minute,
    }
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(ApiKey)) as cur:
            return cur.execute(UPDATE_KEY, params).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        conflict = _name_conflict(exc, name)
        if conflict:
            raise conflict from None
        raise


def rotate_key(
    conn: Connection,
    key_id: int,
    *,
    key_hash: bytes,
    key_prefix: str,
    previous_expires_at: datetime | None,
) -> ApiKey | None:
    """Replace the key's hash; the old one stays valid until `previous_expires_at` (None:
    not at all)."""
    params = {
        "id": key_id,
        "key_hash": key_hash,
        "key_prefix": key_prefix,
        "previous_expires_at": previous_expires_at,
    }
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        return cur.execute(ROTATE_KEY, params).fetchone()


def delete_key(conn: Connection, key_id: int) -> bool:
    """Remove the key for good; its audit rows stay (they carry the id, not a foreign key)."""
    return conn.execute(DELETE_KEY, {"id": key_id}).fetchone() is not None


# Key verification is the authorizer's hot path: it reuses one binary cursor per connection
# and builds the row by position, which measured ~30% faster than a new cursor with a row
# factory per call (bench/bench_keys.py).
_status_cursors: weakref.WeakKeyDictionary[Connection, psycopg.Cursor[tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _status_cursor(conn: Connection) -> psycopg.Cursor[tuple[Any, ...]]:
    cursor = _status_cursors.get(conn)
    if cursor is None or cursor.closed:
        cursor = conn.cursor(binary=True)
        _status_cursors[conn] = cursor
    return cursor


def _status(row: tuple[Any, ...] | None) -> KeyStatus | None:
    if row is None:
        return None
    return KeyStatus(
        id=row[0],
        scopes=row[1],
        active=row[2],
        expires_at=row[3],
        allowed_cidrs=row[4],
        rate_limit_per_minute=row[5],
        key_prefix=row[6],
        previous_key_prefix=row[7],
        previous_key_expires_at=row[8],
    )


def get_status_by_hash(conn: Connection, key_hash: bytes) -> KeyStatus | None:
    """The key whose current or previous (rotated-out) hash this is."""
    cursor = _status_cursor(conn)
    params = {"key_hash": key_hash}
    status = _status(cursor.execute(SELECT_STATUS_BY_HASH, params).fetchone())
    if status is None:
        status = _status(cursor.execute(SELECT_STATUS_BY_PREVIOUS_HASH, params).fetchone())
    return status


def get_status_by_id(conn: Connection, key_id: int) -> KeyStatus | None:
    return _status(_status_cursor(conn).execute(SELECT_STATUS_BY_ID, {"id": key_id}).fetchone())


def has_active_admin_key(conn: Connection) -> bool:
    row = conn.execute(HAS_ACTIVE_ADMIN_KEY).fetchone()
    return bool(row and row[0])


def lock_keys_for_bootstrap(conn: Connection) -> None:
    """Until the transaction ends, no other bootstrap can check for or create a key."""
    conn.execute(LOCK_KEYS_FOR_BOOTSTRAP)


def names_starting_with(conn: Connection, prefix: str) -> list[str]:
    return [row[0] for row in conn.execute(SELECT_NAMES_STARTING_WITH, {"prefix": prefix})]


def insert_audit_event(
    conn: Connection,
    *,
    event: str,
    key_id: int | None = None,
    key_prefix: str | None = None,
    reason: str | None = None,
    method: str | None = None,
    route: str | None = None,
    path: str | None = None,
    status_code: int | None = None,
    latency_ms: int | None = None,
    source_ip: str | None = None,
    request_id: str | None = None,
) -> None:
    """A lifecycle change, in the caller's transaction (as durable as the change itself)."""
    conn.execute(
        INSERT_AUDIT_EVENT,
        {
            "key_id": key_id,
            "event": event,
            "method": method,
            "route": route,
            "path": path,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "source_ip": source_ip,
            "request_id": request_id,
            "key_prefix": key_prefix,
            "reason": reason,
        },
    )


def _request_params(record: RequestRecord, event: str) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "event": event,
        "method": record.method,
        "route": record.route,
        "path": record.path,
        "status_code": record.status_code,
        "latency_ms": record.latency_ms,
        "source_ip": record.source_ip,
        "request_id": record.request_id,
        "key_prefix": record.key_prefix,
        "reason": record.reason,
    }


def record_request(
    conn: Connection,
    record: RequestRecord,
    *,
    event: str = EVENT_REQUEST,
    unless_recorded: bool = False,
) -> None:
    """The audit row of a request (`event` auth_failed: a known key refused, as revoked,
    expired, deleted or rotated out). A statement of its own, with a relaxed commit
    (RELAXED_AUDIT_INSERT). `unless_recorded` writes it only if no row has the request's id yet:
    for writing again after a lost connection (RELAXED_AUDIT_INSERT_ONCE)."""
    if unless_recorded and record.request_id is None:
        raise ValueError("a request without an id cannot be recorded once")
    query = RELAXED_AUDIT_INSERT_ONCE if unless_recorded else RELAXED_AUDIT_INSERT
    conn.execute(query, _request_params(record, event))


def record_refusal(
    conn: Connection,
    *,
    key_id: int,
    key_prefix: str | None,
    reason: str,
    method: str | None,
    route: str | None,
    path: str | None,
    status_code: int = 401,
    latency_ms: int | None = None,
    source_ip: str | None = None,
    request_id: str | None = None,
) -> None:
    """A known key refused (revoked, expired, deleted, rotated out): its own `auth_failed` row.
    A statement of its own, with a relaxed commit (RELAXED_AUDIT_INSERT)."""
    conn.execute(
        RELAXED_AUDIT_INSERT,
        {
            "key_id": key_id,
            "event": EVENT_AUTH_FAILED,
            "method": method,
            "route": route,
            "path": path,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "source_ip": source_ip,
            "request_id": request_id,
            "key_prefix": key_prefix,
            "reason": reason,
        },
    )


def record_unknown_key_refusal(
    conn: Connection,
    *,
    key_prefix: str,
    reason: str,
    method: str | None,
    path: str | None,
    source_ip: str | None = None,
    status_code: int = 401,
    prefixes_per_minute: int,
) -> None:
    """Count a refusal of a key that does not exist in its minute's row.
    A statement of its own, with a relaxed commit."""
    conn.execute(
        RECORD_UNKNOWN_KEY_REFUSAL,
        {
            "key_prefix": key_prefix,
            "reason": reason,
            "method": method,
            "path": path,
            "source_ip": source_ip,
            "status_code": status_code,
            "prefixes_per_minute": prefixes_per_minute,
        },
    )


def record_request_in_window(
    conn: Connection, record: RequestRecord, *, rate_limit_per_minute: int
) -> RateWindow:
    """The audit row of a request that reached its view, and the key's rate window after it:
    one statement, one round trip."""
    params = _request_params(record, EVENT_REQUEST) | {"earlier_needed": rate_limit_per_minute - 1}
    with conn.cursor(row_factory=class_row(RateWindow)) as cur:
        window = cur.execute(RECORD_REQUEST_IN_WINDOW, params).fetchone()
    assert window is not None
    return window


def fold_usage(conn: Connection, *, key_id: int | None = None, settle_seconds: float) -> int:
    """Add request rows older than `settle_seconds` to `request_count`/`last_used_at` (one key,
    or all); return how many keys changed."""
    cur = conn.execute(FOLD_USAGE, {"key_id": key_id, "settle_seconds": settle_seconds})
    return cur.rowcount


def get_audit_page(
    conn: Connection,
    key_id: int,
    *,
    limit: int,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: int | None = None,
    route: str | None = None,
    event: str | None = None,
) -> list[AuditRow]:
    """A key's audit rows, newest first, below `before_id` (the cursor)."""
    params = {
        "key_id": key_id,
        "limit": limit,
        "before_id": before_id,
        "since": since,
        "until": until,
        "status": status,
        "route": route,
        "event": event,
    }
    with conn.cursor(row_factory=class_row(AuditRow)) as cur:
        return cur.execute(SELECT_AUDIT_PAGE, params).fetchall()


def key_has_history(conn: Connection, key_id: int) -> bool:
    """The key exists, or did (its audit rows outlive it)."""
    row = conn.execute(KEY_HAS_HISTORY, {"key_id": key_id}).fetchone()
    return bool(row and row[0])


def select_audit_rows_before(
    conn: Connection, *, cutoff: datetime, after_id: int = 0, limit: int = 10_000
) -> list[AuditRow]:
    """For the archive job: rows that occurred before `cutoff`, in id order, after `after_id`.

    Page with `after_id` = the last id returned. Fold usage first (`service.fold_usage`) so no
    request row leaves before it is counted.
    """
    params = {"cutoff": cutoff, "after_id": after_id, "limit": limit}
    with conn.cursor(row_factory=class_row(AuditRow)) as cur:
        return cur.execute(SELECT_AUDIT_ROWS_BEFORE, params).fetchall()


def delete_audit_rows(conn: Connection, *, first_id: int, last_id: int, cutoff: datetime) -> int:
    """For the archive job, once a page is safely stored: delete ids `first_id..last_id` that
    occurred before `cutoff` (the same cutoff the page was selected with); return the count."""
    cur = conn.execute(
        DELETE_AUDIT_ROWS, {"first_id": first_id, "last_id": last_id, "cutoff": cutoff}
    )
    return cur.rowcount
