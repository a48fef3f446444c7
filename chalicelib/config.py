"""Settings from environment variables, read once per container.

The names are part of the deployment contract (docs: README "Configuration").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from chalicelib import container
from chalicelib.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# In a checkout this is ./migrations; in the Lambda zip, `vendor/migrations` lands at the root,
# so the same relative path holds in both.
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _sslmode(env: Mapping[str, str], name: str) -> str | None:
    raw = _optional(env, name)
    if raw is not None and raw not in _SSLMODES:
        raise ConfigError(f"{name} must be one of {', '.join(_SSLMODES)}, got {raw!r}")
    return raw


_SCHEDULE = re.compile(r"cron\((\S+ ){5}\S+\)|rate\(\d+ (minutes?|hours?|days?)\)")


def _schedule(env: Mapping[str, str], name: str, default: str) -> str:
    """An EventBridge schedule expression, `cron(...)` (six fields, UTC) or `rate(...)`."""
    raw = env.get(name, "").strip() or default
    if not _SCHEDULE.fullmatch(raw):
        raise ConfigError(
            f"{name} must be an EventBridge schedule such as cron(15 0 * * ? *) or "
            f"rate(1 day), got {raw!r}"
        )
    return raw


class Settings(msgspec.Struct, frozen=True):
    database_url: str | None
    database_secret_arn: str | None
    database_host: str | None
    database_port: int | None
    database_name: str | None
    database_sslmode: str | None
    database_sslrootcert: str | None
    data_dir: Path
    in_lambda: bool
    function_name: str | None
    connect_timeout_seconds: int
    statement_timeout_ms: int
    lock_timeout_ms: int
    tcp_user_timeout_ms: int
    keepalives_idle_seconds: int
    keepalives_interval_seconds: int
    keepalives_count: int
    migration_lock_timeout_ms: int
    migration_statement_timeout_ms: int
    migration_lock_wait_seconds: int
    polygon_api_key: str | None
    polygon_api_key_secret_arn: str | None
    polygon_base_url: str
    polygon_base_url_set: bool
    polygon_max_rpm: int | None
    polygon_timeout_seconds: float
    auth_cache_ttl_seconds: int
    audit_retention_days: int
    audit_archive_bucket: str | None
    backfill_queue_name: str
    symbol_check_on_add: bool
    cursor_secret: str
    backfill_depth_daily_days: int
    backfill_depth_intraday_days: int
    validation_max_jump_pct: float
    validation_volume_spike_factor: float
    validation_volume_window: int
    backfill_stocks_schedule: str
    backfill_crypto_schedule: str
    backfill_worker_batch_size: int
    backfill_worker_max_concurrency: int | None
    backfill_max_receive_count: int
    audit_archive_schedule: str
    audit_archive_batch_rows: int
    metrics_namespace: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        max_rpm = _int(env, "POLYGON_MAX_RPM", 0)
        return cls(
            database_url=_optional(env, "DATABASE_URL"),
            database_secret_arn=_optional(env, "DATABASE_SECRET_ARN"),
            # With DATABASE_SECRET_ARN: where the database is, for secrets that hold only the
            # credentials (RDS-managed master user secrets), or to reach it through another
            # endpoint (an RDS Proxy) than the one the secret names. Set, they win.
            database_host=_optional(env, "DATABASE_HOST"),
            database_port=(
                _int(env, "DATABASE_PORT", 5432, minimum=1, maximum=65535)
                if _optional(env, "DATABASE_PORT")
                else None
            ),
            database_name=_optional(env, "DATABASE_NAME"),
            database_sslmode=_sslmode(env, "DATABASE_SSLMODE"),
            database_sslrootcert=_optional(env, "DATABASE_SSLROOTCERT"),
            data_dir=Path(env.get("MDW_DATA_DIR", "").strip() or PROJECT_ROOT / ".data"),
            in_lambda=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
            function_name=_optional(env, "AWS_LAMBDA_FUNCTION_NAME"),
            connect_timeout_seconds=_int(env, "DATABASE_CONNECT_TIMEOUT_SECONDS", 5, minimum=1),
            # Time bounds of every API and job connection (docs/DEPLOYMENT.md, "Timeouts and
            # failover"): with the defaults a request waits at most connect + statement + 1 s
            # = 16 s for a database that stopped answering, inside API Gateway's 29 s.
            statement_timeout_ms=_int(env, "DATABASE_STATEMENT_TIMEOUT_MS", 10_000, minimum=1),
            lock_timeout_ms=_int(env, "DATABASE_LOCK_TIMEOUT_MS", 3_000, minimum=1),
            tcp_user_timeout_ms=_int(env, "DATABASE_TCP_USER_TIMEOUT_MS", 10_000, minimum=1),
            keepalives_idle_seconds=_int(env, "DATABASE_KEEPALIVES_IDLE_SECONDS", 30, minimum=1),
            keepalives_interval_seconds=_int(
                env, "DATABASE_KEEPALIVES_INTERVAL_SECONDS", 10, minimum=1
            ),
            keepalives_count=_int(env, "DATABASE_KEEPALIVES_COUNT", 3, minimum=1),
            migration_lock_timeout_ms=_int(env, "MIGRATION_LOCK_TIMEOUT_MS", 10_000, minimum=1),
            migration_statement_timeout_ms=_int(
                env, "MIGRATION_STATEMENT_TIMEOUT_MS", 600_000, minimum=1
            ),
            migration_lock_wait_seconds=_int(env, "MIGRATION_LOCK_WAIT_SECONDS", 120, minimum=1),
            polygon_api_key=_optional(env, "POLYGON_API_KEY"),
            polygon_api_key_secret_arn=_optional(env, "POLYGON_API_KEY_SECRET_ARN"),
            polygon_base_url=(
                env.get("POLYGON_BASE_URL", "").strip() or "https://api.polygon.io"
            ).rstrip("/"),
            # Whether POLYGON_BASE_URL was given (even as the default address): then the CLI
            # never points the provider at `make run`'s simulator.
            polygon_base_url_set=bool(env.get("POLYGON_BASE_URL", "").strip()),
            polygon_max_rpm=max_rpm or None,
            polygon_timeout_seconds=_float(env, "POLYGON_TIMEOUT_SECONDS", 10.0),
            auth_cache_ttl_seconds=_int(env, "AUTH_CACHE_TTL_SECONDS", 10),
            audit_retention_days=_int(env, "AUDIT_RETENTION_DAYS", 90, minimum=1),
            audit_archive_bucket=_optional(env, "AUDIT_ARCHIVE_BUCKET"),
            backfill_queue_name=env.get("BACKFILL_QUEUE_NAME", "").strip() or "mdw-backfill",
            symbol_check_on_add=_bool(env, "SYMBOL_CHECK_ON_ADD", True),
            # Signs market data page cursors. They carry no secret data, so the default only
            # makes a garbled cursor detectable; a per-deployment value also makes it unforgeable.
            cursor_secret=env.get("CURSOR_SECRET", "").strip() or "mdw-cursor-v1",
            # A new symbol's first backfill reaches this far back: 1d/1w bars, then intraday.
            backfill_depth_daily_days=_int(env, "BACKFILL_DEPTH_DAILY_DAYS", 1826, minimum=1),
            backfill_depth_intraday_days=_int(env, "BACKFILL_DEPTH_INTRADAY_DAYS", 30, minimum=1),
            # Validation thresholds (docs/DATA_QUALITY.md): a close this many percent away
            # from the previous close with no split, a volume this many times the trailing
            # median of the last `window` bars.
            validation_max_jump_pct=_float(env, "VALIDATION_MAX_JUMP_PCT", 25.0),
            validation_volume_spike_factor=_float(env, "VALIDATION_VOLUME_SPIKE_FACTOR", 10.0),
            validation_volume_window=_int(env, "VALIDATION_VOLUME_WINDOW", 20, minimum=1),
            # Serverless operations (docs/DEPLOYMENT.md): EventBridge schedules in UTC, the
            # worker's SQS batch, and receives before a message moves to the dead-letter queue.
            backfill_stocks_schedule=_schedule(
                env, "BACKFILL_STOCKS_SCHEDULE", "cron(30 22 ? * MON-FRI *)"
            ),
            backfill_crypto_schedule=_schedule(
                env, "BACKFILL_CRYPTO_SCHEDULE", "cron(15 0 * * ? *)"
            ),
            backfill_worker_batch_size=_int(
                env, "BACKFILL_WORKER_BATCH_SIZE", 5, minimum=1, maximum=10
            ),
            # SQS pollers the worker may use at once (AWS allows 2 to 1000); set it to the
            # worker's reserved concurrency so SQS never throttles into the dead-letter queue.
            backfill_worker_max_concurrency=(
                _int(env, "BACKFILL_WORKER_MAX_CONCURRENCY", 2, minimum=2, maximum=1000)
                if _optional(env, "BACKFILL_WORKER_MAX_CONCURRENCY")
                else None
            ),
            backfill_max_receive_count=_int(env, "BACKFILL_MAX_RECEIVE_COUNT", 5, minimum=1),
            audit_archive_schedule=_schedule(env, "AUDIT_ARCHIVE_SCHEDULE", "cron(30 4 * * ? *)"),
            audit_archive_batch_rows=_int(env, "AUDIT_ARCHIVE_BATCH_ROWS", 50_000, minimum=1),
            metrics_namespace=env.get("METRICS_NAMESPACE", "").strip() or "mdw",
        )


def get_settings() -> Settings:
    """The container's settings, read from the environment on first use; after changing the
    environment, `container.reset()` makes the next call read it again."""
    state = container.current
    settings = state.settings
    if settings is None:
        settings = state.settings = Settings.from_env(os.environ)
    return settings
