"""Shared pieces for benchmarks: a throwaway migrated database and timing helpers."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chalicelib import db
from chalicelib.config import PROJECT_ROOT
from chalicelib.migrations import run_migrations


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_SERVER_URL") or db.embedded_server_url(
        PROJECT_ROOT / ".data", database="postgres"
    )


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh, migrated database that is dropped afterwards."""
    admin = server_url()
    name = f"mdw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            run_migrations(conn)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def timings(action: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Seconds per call, after a warm-up."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"
