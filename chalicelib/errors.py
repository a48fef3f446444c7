"""Domain errors. Each carries the HTTP status it renders as; `http.error_response` renders
all of them into the one error body, and the CLI turns them into one-line messages.
`describe_error` is the one line a job (a backfill unit, a queue message) records and logs for
any exception."""

from __future__ import annotations

import re
from collections.abc import Callable
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


class ProviderError(Exception):
    """A call to the market data provider failed. Not an AppError: what it means (a 503 when
    an operator adds a symbol, a failed unit in a backfill) is for the caller to say."""


_MAX_DESCRIPTION_LENGTH = 500
_SECRET_PARAMETER = re.compile(r"(?i)(api_?key|token|secret|password)=[^&\s'\"]+")
_BEARER = re.compile(r"(?i)bearer\s+[^\s'\"]+")
_WHITESPACE = re.compile(r"\s+")


def describe_error(exc: BaseException, *, redact: Callable[[str], str] | None = None) -> str:
    """One readable line for a failure, stored and shown to operators: never a secret, a
    traceback or an unbounded provider body. `redact` masks the secrets the caller knows of
    (the provider client's key); anything shaped like a credential is masked as well."""
    if isinstance(exc, ProviderError):
        text = f"provider: {exc}"
    elif isinstance(exc, AppError):
        text = exc.message
    elif _is_database_error(exc):
        text = f"database: {_first_line(exc)}"
    else:
        text = f"{type(exc).__name__}: {_first_line(exc)}"
    if redact is not None:
        text = redact(text)
    text = _SECRET_PARAMETER.sub(lambda match: f"{match.group(1)}=***", text)
    text = _BEARER.sub("Bearer ***", text)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > _MAX_DESCRIPTION_LENGTH:
        text = text[: _MAX_DESCRIPTION_LENGTH - 1] + "…"
    return text


def _is_database_error(exc: BaseException) -> bool:
    import psycopg  # here: the error classes above are imported by code that needs no driver

    return isinstance(exc, psycopg.Error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
