"""Domain errors. Each carries the HTTP status it renders as; `http.error_response` renders
all of them into the one error body, and the CLI turns them into one-line messages."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    code = "internal_error"

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
    code = "database_unavailable"


class DatabaseCredentialsRefused(DatabaseUnavailable):
    """PostgreSQL refused the password: after a rotation, the secret may hold a newer one."""


class MigrationError(AppError):
    """The migration runner refused to run or a migration failed."""

    status = 500
    code = "migration_error"
