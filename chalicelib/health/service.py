"""Is the database reachable and at the schema version this code expects?

API functions ask once per cold start (`ensure_schema_current`) and remember only success, so a
container that started before `migrate` ran starts serving as soon as the schema catches up.
"""

from __future__ import annotations

import threading

import msgspec

from chalicelib import container, db
from chalicelib.errors import (
    DATABASE_UNAVAILABLE,
    AppError,
    DatabaseUnavailable,
    ServiceUnavailable,
)
from chalicelib.schema import current_schema_version, latest_version


class HealthReport(msgspec.Struct, frozen=True):
    status: str
    database: str
    schema_version: int | None
    expected_schema_version: int
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_health() -> HealthReport:
    expected = latest_version()
    try:
        version = db.read(current_schema_version, one_snapshot=False)
    except AppError as exc:
        # The message is the error's public one: it never names the server (see db.py).
        return HealthReport("unavailable", "unreachable", None, expected, exc.message)
    if version is None or version < expected:
        return HealthReport(
            "unavailable",
            "behind",
            version,
            expected,
            f"database schema is at version {version or 0}, this code expects {expected}; "
            "run the migrate function (or `mdw db migrate`)",
        )
    return HealthReport("ok", "ok", version, expected)


_schema_lock = threading.Lock()


def ensure_schema_current() -> None:
    """Raise ServiceUnavailable until the schema is current; one cheap query per container
    (remembered in `container.current.schema_current`)."""
    state = container.current
    with _schema_lock:
        if state.schema_current:
            return
        report = check_health()
        if report.database == "unreachable":
            raise DatabaseUnavailable(report.message or DATABASE_UNAVAILABLE)
        if not report.ok:
            raise ServiceUnavailable(report.message or "database schema is behind")
        state.schema_current = True
