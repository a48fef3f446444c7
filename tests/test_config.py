from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib import container
from chalicelib.config import PROJECT_ROOT, Settings, get_settings
from chalicelib.errors import ConfigError


def test_defaults_match_the_documented_contract():
    settings = Settings.from_env({})

    assert settings.database_url is None
    assert settings.data_dir == PROJECT_ROOT / ".data"
    assert settings.in_lambda is False
    assert settings.polygon_base_url == "https://api.polygon.io"
    assert settings.polygon_max_rpm is None
    assert settings.auth_cache_ttl_seconds == 10
    assert settings.audit_retention_days == 90
    assert settings.audit_archive_bucket is None
    assert settings.backfill_queue_name == "mdw-backfill"
    assert settings.symbol_check_on_add is True


def test_values_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/mdw",
            "MDW_DATA_DIR": "/srv/mdw",
            "AWS_LAMBDA_FUNCTION_NAME": "mdw-dev",
            "POLYGON_BASE_URL": "http://127.0.0.1:9999/",
            "POLYGON_MAX_RPM": "5",
            "AUTH_CACHE_TTL_SECONDS": "2",
            "SYMBOL_CHECK_ON_ADD": "false",
        }
    )

    assert settings.database_url == "postgresql://db/mdw"
    assert settings.data_dir == Path("/srv/mdw")
    assert settings.in_lambda is True
    assert settings.polygon_base_url == "http://127.0.0.1:9999"
    assert settings.polygon_max_rpm == 5
    assert settings.auth_cache_ttl_seconds == 2
    assert settings.symbol_check_on_add is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"AUTH_CACHE_TTL_SECONDS": "ten"},
            "AUTH_CACHE_TTL_SECONDS must be a whole number, got 'ten'",
        ),
        ({"AUDIT_RETENTION_DAYS": "0"}, "AUDIT_RETENTION_DAYS must be at least 1, got 0"),
        (
            {"SYMBOL_CHECK_ON_ADD": "maybe"},
            "SYMBOL_CHECK_ON_ADD must be true or false, got 'maybe'",
        ),
        ({"POLYGON_TIMEOUT_SECONDS": "-1"}, "POLYGON_TIMEOUT_SECONDS must be positive, got -1.0"),
        (
            {"DATABASE_SSLMODE": "verify"},
            "DATABASE_SSLMODE must be one of disable, allow, prefer, require, verify-ca, "
            "verify-full, got 'verify'",
        ),
        ({"DATABASE_PORT": "70000"}, "DATABASE_PORT must be at most 65535, got 70000"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)

    assert caught.value.message == message


def test_settings_are_read_once_until_the_container_is_reset(monkeypatch):
    monkeypatch.setenv("AUTH_CACHE_TTL_SECONDS", "3")
    first = get_settings()
    monkeypatch.setenv("AUTH_CACHE_TTL_SECONDS", "4")

    assert get_settings() is first
    assert get_settings().auth_cache_ttl_seconds == 3
    container.reset()
    assert get_settings().auth_cache_ttl_seconds == 4
