"""Secrets Manager values, read once per container. boto3 is imported only when a secret is
configured, so the API's cold start does not pay for it otherwise."""

from __future__ import annotations

import json
import threading
from typing import Any

from psycopg.conninfo import make_conninfo

from chalicelib.errors import ConfigError

_cache: dict[str, str] = {}
_lock = threading.Lock()


def get_secret_string(arn: str) -> str:
    with _lock:
        if arn in _cache:
            return _cache[arn]
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response: dict[str, Any] = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"cannot read secret {arn}: {code}") from None
    except BotoCoreError as exc:
        raise ConfigError(
            f"cannot reach Secrets Manager for secret {arn}: {type(exc).__name__}"
        ) from None
    value = response.get("SecretString")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"secret {arn} has no SecretString")
    with _lock:
        _cache[arn] = value
    return value


def database_url_from_secret(arn: str) -> str:
    """Build a connection string from an RDS-format secret (host, port, username, password,
    dbname)."""
    try:
        secret = json.loads(get_secret_string(arn))
    except json.JSONDecodeError:
        raise ConfigError(f"secret {arn} is not JSON (expected the RDS secret format)") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"secret {arn} is not a JSON object (expected the RDS secret format)")
    missing = [k for k in ("host", "username", "password") if not secret.get(k)]
    if missing:
        raise ConfigError(f"secret {arn} lacks {', '.join(missing)}")
    return make_conninfo(
        host=str(secret["host"]),
        port=str(secret.get("port") or 5432),
        user=str(secret["username"]),
        password=str(secret["password"]),
        dbname=str(secret.get("dbname") or "postgres"),
        sslmode=str(secret.get("sslmode") or "prefer"),
    )


def clear_cache() -> None:
    with _lock:
        _cache.clear()
