"""Test infrastructure: one fresh PostgreSQL database per session, migrated by the real runner.

The server is the embedded one (pgserver) unless TEST_DATABASE_SERVER_URL names another (CI's
second pass uses the machine's PostgreSQL). Tests only ever touch databases created here.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import Phase, settings
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chalicelib import container, db
from chalicelib.config import PROJECT_ROOT
from chalicelib.migrations import run_migrations

# Property-based tests take their example count from the profile: `suite` for `make test`;
# `mutate` for `make mutate` (devtools/mutate.py), which runs a module's tests once per mutant:
# a few examples, the same for every mutant, and a failure reported as found, not shrunk.
settings.register_profile("suite", max_examples=200)
settings.register_profile(
    "mutate",
    max_examples=40,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
)
settings.load_profile("suite")

# The packaged functions' tests need `make package` first: `make package-test` runs them.
collect_ignore = [] if os.environ.get("MDW_PACKAGE_DIR") else ["package"]

DATA_TABLES = (
    "api_keys",
    "api_key_audit",
    "tracked_symbols",
    "bars",
    "backfill_runs",
    "backfill_state",
    "backfill_plan_messages",
    "splits",
)


def create_database(server_url: str, label: str = "") -> tuple[str, str]:
    name = f"mdw_test_{label}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def server_url() -> str:
    """Maintenance URL of the server on which the tests create their databases."""
    url = os.environ.get("TEST_DATABASE_SERVER_URL")
    if url:
        return url
    return db.embedded_server_url(PROJECT_ROOT / ".data", database="postgres")


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """The session's database, fresh and migrated; DATABASE_URL points the code at it."""
    name, url = create_database(server_url)
    with psycopg.connect(url, autocommit=True) as conn:
        run_migrations(conn)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        container.reset()
        yield url
        container.reset()
    drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A database with nothing in it, for migration and bootstrap tests."""
    name, url = create_database(server_url, label="empty_")
    yield url
    drop_database(server_url, name)


@pytest.fixture(autouse=True)
def _fresh_container() -> Iterator[None]:
    """Each test starts with nothing remembered (settings, pool, caches, clients) and leaves
    nothing behind: `container.reset()` is the one hook. A test that runs a function as in
    Lambda (AWS_LAMBDA_FUNCTION_NAME set) has it format the root log handlers as JSON, as the
    function's first invocation does; their formats and level are put back afterwards."""
    root = logging.getLogger()
    formats = [(handler, handler.formatter) for handler in root.handlers]
    level = root.level
    container.reset()
    yield
    container.reset()
    for handler, formatter in formats:
        handler.setFormatter(formatter)
    root.setLevel(level)


@pytest.fixture
def set_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Change settings for one test: `set_env(AUTH_CACHE_TTL_SECONDS="1")`. The container is
    reset, so everything is read again with the new settings; a test's pinned connection stays."""

    def apply(**values: str | None) -> None:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        source = container.current.database
        container.reset()
        if isinstance(source, PinnedConnection):
            db.set_database(source)

    return apply


FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so no test can reach a real AWS account."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(fake_aws_credentials: None) -> Iterator[None]:
    """AWS (SQS, S3, Secrets Manager, ...) answered in-process by moto."""
    from moto import mock_aws

    with mock_aws():
        yield
    container.reset()  # no client or secret made under moto outlives it


@pytest.fixture
def conn(database_url: str) -> Iterator[db.Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with (
        psycopg.connect(database_url, autocommit=True) as connection,
        connection.transaction(force_rollback=True),
    ):
        yield connection


class PinnedConnection:
    """Hands the app the test's own connection, so its writes roll back with the test."""

    def __init__(self, connection: db.Connection) -> None:
        self._connection = connection

    @contextmanager
    def connection(self) -> Iterator[db.Connection]:
        yield self._connection


@pytest.fixture
def pinned_db(conn: db.Connection) -> Iterator[db.Connection]:
    db.set_database(PinnedConnection(conn))
    yield conn
    container.reset()


@pytest.fixture
def client(pinned_db: db.Connection) -> Iterator[Any]:
    """chalice.test.Client on the app, writing through the test's rolled-back connection."""
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client


def truncate_data(url: str) -> None:
    """Empty the data tables. Identities are not restarted: the session's `chalice local`
    keeps its caches across tests, so an id must never name one key in one test and another
    key in the next (a cached status of the old key would answer for the new one)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in DATA_TABLES)
            )
        )


@pytest.fixture
def committed_db(database_url: str) -> Iterator[str]:
    """The app's real connection handling against the session database; data is committed and
    truncated afterwards. For concurrency tests and real server processes."""
    truncate_data(database_url)
    container.reset()
    yield database_url
    container.reset()  # closes the pool
    truncate_data(database_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


@pytest.fixture(scope="session")
def chalice_local(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chalice local` process on a free port, against the session database."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("chalice-local") / "server.log"
    env = {**os.environ, "DATABASE_URL": database_url, "AUTH_CACHE_TTL_SECONDS": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "chalice"),
                "local",
                "--stage",
                "local",
                "--no-autoreload",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
