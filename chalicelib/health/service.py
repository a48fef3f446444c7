"""Is the database reachable and at the schema version this code expects?

API functions ask once per cold start (`health.routes.ensure_schema_current`) and remember only
success, so a container that started before `migrate` ran starts serving as soon as the schema
catches up. The boundary opens the connection; these functions judge what it found.
"""

from __future__ import annotations

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


def schema_report(conn: db.Connection) -> HealthReport:
    """The database answered on `conn`: is its schema at this code's version?"""
    expected = latest_version()
    version = current_schema_version(conn)
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


def unreachable_report(error: AppError) -> HealthReport:
    """The database could not be reached. The message is the error's public one: it never
    names the server (see db.py)."""
    return HealthReport("unavailable", "unreachable", None, latest_version(), error.message)


def schema_known_current() -> bool:
    """This container already found the schema current (`container.current.schema_current`)."""
    return container.current.schema_current


def require_current(report: HealthReport) -> None:
    """Raise the report's 503 unless it is ok; remember an ok one for the container's life
    (a failure is not remembered, so serving starts as soon as the schema catches up)."""
    if report.database == "unreachable":
        raise DatabaseUnavailable(report.message or DATABASE_UNAVAILABLE)
    if not report.ok:
        raise ServiceUnavailable(report.message or "database schema is behind")
    container.current.schema_current = True
