"""Secrets Manager values, read once per container. boto3 is imported only when a secret is
configured, so the API's cold start does not pay for it otherwise.

Every error names the secret's ARN and never its value: these messages reach logs and the
`migrate` function's output.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from psycopg.conninfo import make_conninfo

from chalicelib import container
from chalicelib.config import Settings, get_settings
from chalicelib.errors import ConfigError

# A function in a VPC with no route to Secrets Manager would otherwise wait for botocore's
# defaults (60 s a try, several tries) and time out with no message; fail in seconds instead.
_CONNECT_TIMEOUT_SECONDS = 3
_READ_TIMEOUT_SECONDS = 5
_MAX_ATTEMPTS = 2

# Keys under which a JSON secret may hold the Polygon key; a plain-text secret is the key.
_POLYGON_KEY_FIELDS = ("api_key", "apiKey", "POLYGON_API_KEY")

log = logging.getLogger(__name__)


def _secrets_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "secretsmanager",
        config=Config(
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            read_timeout=_READ_TIMEOUT_SECONDS,
            retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
        ),
    )


def get_secret_string(arn: str, *, refresh: bool = False) -> str:
    """The secret's SecretString, fetched on first use and kept for the container's life;
    `refresh` reads it again (after a rotation made the kept value stale). Values are kept in
    `container.current.secrets`."""
    cached = container.current.secrets.get(arn)
    if cached is not None and not refresh:
        return cached
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    try:
        response: dict[str, Any] = _secrets_client().get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"cannot read secret {arn}: {code}") from None
    except (EndpointConnectionError, NoRegionError, NoCredentialsError) as exc:
        raise ConfigError(
            f"cannot reach Secrets Manager to read secret {arn}: {type(exc).__name__}; a "
            "function in a VPC needs a Secrets Manager VPC endpoint or a NAT gateway"
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(
            f"cannot reach Secrets Manager to read secret {arn}: {type(exc).__name__}"
        ) from None
    value = response.get("SecretString")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"secret {arn} has no SecretString (binary secrets are not supported)")
    return container.current.secrets.put(arn, value)


def database_url_from_secret(
    arn: str, settings: Settings | None = None, *, refresh: bool = False
) -> str:
    """A connection string from a database secret: the full RDS format (host, port, username,
    password, dbname), or an RDS-managed master user secret, which holds only username and
    password, with the rest from DATABASE_HOST, DATABASE_PORT and DATABASE_NAME. Those settings,
    and DATABASE_SSLMODE / DATABASE_SSLROOTCERT, win over the secret's values when set."""
    try:
        secret = json.loads(get_secret_string(arn, refresh=refresh))
    except json.JSONDecodeError:
        raise ConfigError(f"secret {arn} is not JSON (expected the RDS secret format)") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"secret {arn} is not a JSON object (expected the RDS secret format)")
    settings = settings or get_settings()
    host = settings.database_host or secret.get("host")
    missing = [k for k in ("username", "password") if not secret.get(k)]
    if not host:
        missing.insert(0, "host (set DATABASE_HOST for a secret that holds only credentials)")
    if missing:
        raise ConfigError(f"secret {arn} lacks {', '.join(missing)}")
    port = settings.database_port or secret.get("port") or 5432
    if not str(port).isdigit():
        raise ConfigError(f"secret {arn} has a port that is not a number")
    params = {
        "host": str(host),
        "port": str(port),
        "user": str(secret["username"]),
        "password": str(secret["password"]),
        "dbname": str(settings.database_name or secret.get("dbname") or "postgres"),
        "sslmode": str(settings.database_sslmode or secret.get("sslmode") or "prefer"),
    }
    if settings.database_sslrootcert:
        params["sslrootcert"] = settings.database_sslrootcert
    return make_conninfo(**params)


def polygon_api_key_from_secret(arn: str) -> str:
    """The Polygon key from a plain-text secret, or from a JSON secret's `api_key` field."""
    raw = get_secret_string(arn).strip()
    if not raw.startswith("{"):
        return raw
    try:
        secret = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(
            f"secret {arn} looks like JSON but does not parse; store the Polygon key as plain "
            'text or as {"api_key": "..."}'
        ) from None
    for field in _POLYGON_KEY_FIELDS:
        value = secret.get(field) if isinstance(secret, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise ConfigError(
        f"secret {arn} has no api_key field; store the Polygon key as plain text or as "
        '{"api_key": "..."}'
    )


def resolve_polygon_api_key(settings: Settings) -> str | None:
    """POLYGON_API_KEY when set, else the key in POLYGON_API_KEY_SECRET_ARN, else None (the
    local simulator's case)."""
    if settings.polygon_api_key:
        return settings.polygon_api_key
    if settings.polygon_api_key_secret_arn:
        return polygon_api_key_from_secret(settings.polygon_api_key_secret_arn)
    return None
