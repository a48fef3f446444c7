"""Domain errors. Each carries the HTTP status it renders as; `http.error_response` renders
all of them into the one error body, and the CLI turns them into one-line messages."""

from __future__ import annotations

from typing import Any

DATABASE_UNAVAILABLE = "the database is unavailable; retry shortly"


class AppError(Exception):
    status = 500
    code = "internal_error"
    # Seconds a client should wait before retrying, sent as `Retry-After`; None: no header.
    retry_after: int | None = None

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class Unprocessable(AppError):
    status = 422
    code = "unprocessable"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"


class ConfigError(AppError):
    """Missing or invalid configuration: the function cannot start."""

    status = 503
    code = "configuration_error"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached, lost the connection or did not answer in time.

    The message reaches the public (error bodies, /health) and the CLI, so it never names host,
    port, user, database or repeats libpq's words: chalicelib/db.py logs those, with the
    password masked. Retrying is safe: nothing was applied, or the message says it may have been.
    """

    code = "database_unavailable"
    retry_after = 1

    def __init__(self, message: str = DATABASE_UNAVAILABLE, *, details: Any = None) -> None:
        super().__init__(message, details=details)


class DatabaseCredentialsRefused(DatabaseUnavailable):
    """PostgreSQL refused the password: after a rotation, the secret may hold a newer one."""


class MigrationError(AppError):
    """The migration runner refused to run or a migration failed."""

    status = 500
    code = "migration_error"
