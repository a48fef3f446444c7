"""Count the server round trips made on one psycopg connection, from libpq's protocol trace:
every exchange ends with the server's ReadyForQuery. Tests and benchmarks use it to pin what a
request costs in database round trips."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0


@contextmanager
def counting_round_trips(conn: psycopg.Connection[Any]) -> Iterator[RoundTrips]:
    counted = RoundTrips()
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            counted.count = trace.read().decode(errors="replace").count("\tReadyForQuery\t")
