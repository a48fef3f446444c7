"""All SQL of the planner and worker: what to plan, and the planned-message ledger that makes a
repeated plan and a redelivered message change nothing. Functions never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from chalicelib.market.timeframes import derived_from
from chalicelib.ops.models import PlanIdentity, PlanMessageRow, PlanUnit

Connection = psycopg.Connection[Any]

# One backward probe of the bars primary key per (symbol, timeframe): cheap at any table size,
# where max(time) grouped over all bars would read them all.
SELECT_PLAN_UNITS = """
SELECT s.symbol, s.asset_class, tf.timeframe, newest.time AS newest, s.timeframes AS tracked
FROM tracked_symbols s
CROSS JOIN LATERAL unnest(s.timeframes) AS tf(timeframe)
LEFT JOIN LATERAL (
    SELECT b.time FROM bars b
    WHERE b.symbol = s.symbol AND b.timeframe = tf.timeframe
    ORDER BY b.time DESC
    LIMIT 1
) newest ON true
WHERE s.active AND s.asset_class = ANY(%(asset_classes)s)
ORDER BY s.symbol, tf.timeframe
"""

# Records new identities and returns every planned identity SQS has not accepted yet: the new
# ones, and older ones whose send failed (a CTE reads the table as it was before the INSERT, so
# no row comes back twice).
CLAIM_UNSENT = """
WITH planned AS (
    SELECT * FROM unnest(%(kinds)s::text[], %(targets)s::text[], %(timeframes)s::text[],
                         %(windows)s::date[]) AS p(kind, target, timeframe, window_date)
), inserted AS (
    INSERT INTO backfill_plan_messages (kind, target, timeframe, window_date)
    SELECT kind, target, timeframe, window_date FROM planned
    ON CONFLICT DO NOTHING
    RETURNING kind, target, timeframe, window_date
)
SELECT kind, target, timeframe, window_date FROM inserted
UNION ALL
SELECT m.kind, m.target, m.timeframe, m.window_date
FROM backfill_plan_messages m
JOIN planned p USING (kind, target, timeframe, window_date)
WHERE m.sent_at IS NULL
ORDER BY kind, target, timeframe, window_date
"""

MARK_SENT = """
UPDATE backfill_plan_messages m SET sent_at = clock_timestamp()
FROM unnest(%(kinds)s::text[], %(targets)s::text[], %(timeframes)s::text[],
            %(windows)s::date[]) AS p(kind, target, timeframe, window_date)
WHERE (m.kind, m.target, m.timeframe, m.window_date)
    = (p.kind, p.target, p.timeframe, p.window_date)
"""

IDENTITY_WHERE = """
kind = %(kind)s AND target = %(target)s AND timeframe = %(timeframe)s
AND window_date = %(window_date)s
"""

# A message can also come from outside a plan (an operator's own send): it gets its ledger row
# on first receipt. Backfills requested through the API carry a request id and skip the ledger.
RECORD_ATTEMPT = """
INSERT INTO backfill_plan_messages AS m (kind, target, timeframe, window_date, sent_at, attempts)
VALUES (%(kind)s, %(target)s, %(timeframe)s, %(window_date)s, clock_timestamp(), 1)
ON CONFLICT (kind, target, timeframe, window_date) DO UPDATE SET attempts = m.attempts + 1
RETURNING kind, target, timeframe, window_date, sent_at, completed_at, attempts
"""

MARK_COMPLETED = f"""
UPDATE backfill_plan_messages
SET completed_at = clock_timestamp(), last_error = NULL
WHERE {IDENTITY_WHERE}
"""

MARK_FAILED = f"""
UPDATE backfill_plan_messages SET last_error = %(error)s WHERE {IDENTITY_WHERE}
"""

DELETE_PLANNED_BEFORE = "DELETE FROM backfill_plan_messages WHERE planned_at < %(before)s"


def _columns(identities: Sequence[PlanIdentity]) -> dict[str, list[Any]]:
    return {
        "kinds": [i.kind for i in identities],
        "targets": [i.target for i in identities],
        "timeframes": [i.timeframe for i in identities],
        "windows": [i.window_date for i in identities],
    }


def _identity(identity: PlanIdentity) -> dict[str, Any]:
    return {
        "kind": identity.kind,
        "target": identity.target,
        "timeframe": identity.timeframe,
        "window_date": identity.window_date,
    }


def list_plan_units(conn: Connection, *, asset_classes: Sequence[str]) -> list[PlanUnit]:
    """Every active (symbol, timeframe) of these asset classes with its newest bar's start."""
    rows = conn.execute(SELECT_PLAN_UNITS, {"asset_classes": list(asset_classes)}).fetchall()
    return [
        PlanUnit(
            symbol, asset_class, timeframe, newest, derived_from(timeframe, tracked) is not None
        )
        for symbol, asset_class, timeframe, newest, tracked in rows
    ]


def claim_unsent(conn: Connection, identities: Sequence[PlanIdentity]) -> list[PlanIdentity]:
    """Record `identities`; return those not yet accepted by SQS, in a stable order."""
    if not identities:
        return []
    with conn.cursor(row_factory=class_row(PlanIdentity)) as cur:
        return cur.execute(CLAIM_UNSENT, _columns(identities)).fetchall()


def mark_sent(conn: Connection, identities: Sequence[PlanIdentity]) -> None:
    if identities:
        conn.execute(MARK_SENT, _columns(identities))


def record_attempt(conn: Connection, identity: PlanIdentity) -> PlanMessageRow:
    """Count one receipt of the message (creating its row if no plan did); return the row."""
    with conn.cursor(row_factory=class_row(PlanMessageRow)) as cur:
        row = cur.execute(RECORD_ATTEMPT, _identity(identity)).fetchone()
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE always returns the row
    return row


def mark_completed(conn: Connection, identity: PlanIdentity) -> None:
    conn.execute(MARK_COMPLETED, _identity(identity))


def mark_failed(conn: Connection, identity: PlanIdentity, *, error: str) -> None:
    conn.execute(MARK_FAILED, {**_identity(identity), "error": error})


def delete_planned_before(conn: Connection, *, before: datetime) -> int:
    """Forget planned messages older than `before`; return how many rows went."""
    return conn.execute(DELETE_PLANNED_BEFORE, {"before": before}).rowcount
