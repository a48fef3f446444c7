"""Secrets Manager: the database and Polygon secrets, read once per container, with errors that
name the ARN and never the value."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from chalicelib import db, secrets
from chalicelib.config import get_settings
from chalicelib.errors import ConfigError, DatabaseCredentialsRefused
from tests.conftest import free_port

PASSWORD = "s3cr3t-pa55word-never-shown"
POLYGON_KEY = "pk_live_never_shown_0123456789"
RDS_SECRET = {
    "engine": "postgres",
    "host": "mdw.cluster-abc.us-east-1.rds.amazonaws.com",
    "port": 5432,
    "username": "mdw_app",
    "password": PASSWORD,
    "dbname": "mdw",
}


def put_secret(name: str, value: str) -> str:
    response = boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)
    arn: str = response["ARN"]
    return arn


@pytest.mark.usefixtures("aws")
class TestDatabaseSecret:
    def test_builds_the_connection_string_from_the_rds_secret(self) -> None:
        arn = put_secret("mdw/db", json.dumps(RDS_SECRET))

        params = conninfo_to_dict(secrets.database_url_from_secret(arn))

        assert params["host"] == RDS_SECRET["host"]
        assert params["port"] == "5432"
        assert params["user"] == "mdw_app"
        assert params["password"] == PASSWORD
        assert params["dbname"] == "mdw"

    def test_is_read_once_per_container(self) -> None:
        arn = put_secret("mdw/db", json.dumps(RDS_SECRET))
        first = secrets.database_url_from_secret(arn)
        boto3.client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

        assert secrets.database_url_from_secret(arn) == first

    def test_database_url_wins_over_the_secret(self, set_env: Callable[..., None]) -> None:
        # The ARN names no secret: reading it would fail, so success proves it was not read.
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf"
        set_env(DATABASE_URL="postgresql://u@db.example:5432/x", DATABASE_SECRET_ARN=arn)

        assert db.resolve_database_url(get_settings()) == "postgresql://u@db.example:5432/x"

    def test_the_secret_is_used_when_database_url_is_unset(
        self, set_env: Callable[..., None]
    ) -> None:
        arn = put_secret("mdw/db", json.dumps(RDS_SECRET))
        set_env(DATABASE_URL=None, DATABASE_SECRET_ARN=arn)

        assert conninfo_to_dict(db.resolve_database_url(get_settings()))["user"] == "mdw_app"

    def test_a_missing_secret_names_the_arn(self) -> None:
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mdw/absent-AbCdEf"

        with pytest.raises(ConfigError) as raised:
            secrets.database_url_from_secret(arn)

        assert raised.value.message == f"cannot read secret {arn}: ResourceNotFoundException"

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (f"host=db password={PASSWORD}", "is not JSON (expected the RDS secret format)"),
            (json.dumps([PASSWORD]), "is not a JSON object (expected the RDS secret format)"),
            (
                json.dumps({**RDS_SECRET, "host": ""}),
                "lacks host (set DATABASE_HOST for a secret that holds only credentials)",
            ),
            (json.dumps({**RDS_SECRET, "port": f"x{PASSWORD}"}), "has a port that is not a number"),
        ],
    )
    def test_a_malformed_secret_names_the_arn_and_never_the_value(
        self, value: str, reason: str
    ) -> None:
        arn = put_secret("mdw/db", value)

        with pytest.raises(ConfigError) as raised:
            secrets.database_url_from_secret(arn)

        assert raised.value.message == f"secret {arn} {reason}"
        assert PASSWORD not in str(raised.value)


@pytest.mark.usefixtures("aws")
class TestPolygonSecret:
    @pytest.mark.parametrize(
        "stored",
        [POLYGON_KEY, f"{POLYGON_KEY}\n", json.dumps({"api_key": POLYGON_KEY})],
    )
    def test_reads_a_plain_or_json_secret(self, stored: str, set_env: Callable[..., None]) -> None:
        arn = put_secret("mdw/polygon", stored)
        set_env(POLYGON_API_KEY=None, POLYGON_API_KEY_SECRET_ARN=arn)

        assert secrets.resolve_polygon_api_key(get_settings()) == POLYGON_KEY

    def test_the_plain_variable_wins(self, set_env: Callable[..., None]) -> None:
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf"
        set_env(POLYGON_API_KEY="from-env", POLYGON_API_KEY_SECRET_ARN=arn)

        assert secrets.resolve_polygon_api_key(get_settings()) == "from-env"

    def test_no_key_configured_is_none(self, set_env: Callable[..., None]) -> None:
        set_env(POLYGON_API_KEY=None, POLYGON_API_KEY_SECRET_ARN=None)

        assert secrets.resolve_polygon_api_key(get_settings()) is None

    def test_is_read_once_per_container(self, set_env: Callable[..., None]) -> None:
        arn = put_secret("mdw/polygon", POLYGON_KEY)
        set_env(POLYGON_API_KEY=None, POLYGON_API_KEY_SECRET_ARN=arn)
        secrets.resolve_polygon_api_key(get_settings())
        boto3.client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

        assert secrets.resolve_polygon_api_key(get_settings()) == POLYGON_KEY

    @pytest.mark.parametrize(
        ("stored", "reason"),
        [
            ('{"api_key": "' + POLYGON_KEY, "looks like JSON but does not parse"),
            (json.dumps({"key": POLYGON_KEY}), "has no api_key field"),
        ],
    )
    def test_a_malformed_secret_names_the_arn_and_never_the_value(
        self, stored: str, reason: str
    ) -> None:
        arn = put_secret("mdw/polygon", stored)

        with pytest.raises(ConfigError) as raised:
            secrets.polygon_api_key_from_secret(arn)

        assert raised.value.message.startswith(f"secret {arn} {reason}")
        assert POLYGON_KEY not in str(raised.value)


def test_an_unreachable_secrets_manager_is_a_clear_error(
    fake_aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on this port: the same failure as a VPC with no route to the service.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{free_port()}")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mdw/db-AbCdEf"

    with pytest.raises(ConfigError) as raised:
        secrets.database_url_from_secret(arn)

    assert raised.value.message == (
        f"cannot reach Secrets Manager to read secret {arn}: EndpointConnectionError; a "
        "function in a VPC needs a Secrets Manager VPC endpoint or a NAT gateway"
    )
    assert raised.value.status == 503


def test_a_function_without_a_secret_never_imports_boto3() -> None:
    import subprocess
    import sys

    from chalicelib.config import PROJECT_ROOT

    code = "import sys, app; print('boto3' in sys.modules)"
    result: Any = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.fixture(scope="module")
def password_server_process() -> Any:
    """A PostgreSQL that asks for passwords (the shared test servers trust local users)."""
    from tests.pgprocess import PostgresProcess

    server = PostgresProcess(superuser_password="admin-pw").start()
    with psycopg.connect(server.url(password="admin-pw"), autocommit=True) as conn:
        conn.execute("CREATE ROLE mdw_app LOGIN")
        conn.execute("CREATE DATABASE mdw OWNER mdw_app")
    yield server
    server.remove()


@pytest.fixture
def password_server(password_server_process: Any) -> Any:
    """The password server with mdw_app's first password."""
    url = password_server_process.url(password="admin-pw")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER ROLE mdw_app PASSWORD 'first-Pa55/word'")
    return password_server_process


@pytest.mark.usefixtures("aws")
class TestSecretsAsAwsHandsThemOut:
    def test_an_rds_managed_secret_holds_only_credentials(
        self, password_server: Any, set_env: Callable[..., None]
    ) -> None:
        arn = put_secret(
            "rds!cluster-1", json.dumps({"username": "mdw_app", "password": "first-Pa55/word"})
        )
        set_env(
            DATABASE_URL=None,
            DATABASE_SECRET_ARN=arn,
            DATABASE_HOST="127.0.0.1",
            DATABASE_PORT=str(password_server.port),
            DATABASE_NAME="mdw",
        )
        db.set_database(None)

        with db.connection() as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()

        assert row == ("mdw_app", "mdw")
        db.set_database(None)

    def test_the_settings_win_over_the_secret_for_where_and_how(
        self, set_env: Callable[..., None]
    ) -> None:
        arn = put_secret("mdw/db", json.dumps(RDS_SECRET))
        set_env(
            DATABASE_HOST="proxy.example",
            DATABASE_PORT="6432",
            DATABASE_NAME="warehouse",
            DATABASE_SSLMODE="verify-full",
            DATABASE_SSLROOTCERT="/var/task/certs/rds-global-bundle.pem",
        )

        params = conninfo_to_dict(secrets.database_url_from_secret(arn, get_settings()))

        assert params == {
            "host": "proxy.example",
            "port": "6432",
            "user": "mdw_app",
            "password": PASSWORD,
            "dbname": "warehouse",
            "sslmode": "verify-full",
            "sslrootcert": "/var/task/certs/rds-global-bundle.pem",
        }

    def test_a_rotated_password_is_read_again_once_and_never_logged(
        self, password_server: Any, set_env: Callable[..., None], caplog: Any
    ) -> None:
        secret = {
            **RDS_SECRET,
            "host": "127.0.0.1",
            "port": password_server.port,
            "password": "first-Pa55/word",
        }
        arn = put_secret("mdw/db", json.dumps(secret))
        set_env(DATABASE_URL=None, DATABASE_SECRET_ARN=arn)
        db.set_database(None)
        with db.connection() as conn:
            conn.execute("SELECT 1")
        # The rotation: a new password in PostgreSQL and in the secret. Connections already
        # open stay authenticated; the next new one would present the old password.
        with psycopg.connect(password_server.url(password="admin-pw"), autocommit=True) as admin:
            admin.execute("ALTER ROLE mdw_app PASSWORD 'second-Pa55@word'")
        boto3.client("secretsmanager").put_secret_value(
            SecretId=arn, SecretString=json.dumps({**secret, "password": "second-Pa55@word"})
        )
        db.get_database().close()  # type: ignore[attr-defined]

        with caplog.at_level("INFO"), db.connection() as conn:
            row = conn.execute("SELECT current_user").fetchone()

        assert row == ("mdw_app",)
        logged = [r.getMessage() for r in caplog.records if r.name == "chalicelib.db"]
        assert len(logged) == 2
        assert logged[0].startswith(
            f'database unavailable: cannot connect to database "mdw" on '
            f"127.0.0.1:{password_server.port}: "
        )
        assert logged[0].endswith('password authentication failed for user "mdw_app"')
        assert logged[1] == "the database refused the password; reading the database secret again"
        assert "Pa55" not in caplog.text
        db.set_database(None)

    def test_a_refused_password_without_a_secret_is_not_retried(self, password_server: Any) -> None:
        source = db.Database(password_server.url(user="mdw_app", password="wrong", dbname="mdw"))

        with pytest.raises(DatabaseCredentialsRefused) as raised, source.connection():
            pass

        assert "wrong" not in str(raised.value)
