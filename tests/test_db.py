from __future__ import annotations

import os
import socket
import threading
import time

import msgspec
import psycopg
import pytest

from chalicelib import db
from chalicelib.config import PROJECT_ROOT, Settings
from chalicelib.errors import ConfigError, DatabaseUnavailable


def backend_pid(conn: db.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_connections_are_reused_between_uses(database_url):
    database = db.Database(database_url)
    with database.connection() as conn:
        first = backend_pid(conn)
    with database.connection() as conn:
        second = backend_pid(conn)
    database.close()

    assert first == second


def test_a_connection_terminated_by_the_server_is_replaced_on_next_use(database_url):
    database = db.Database(database_url)
    with database.connection() as conn:
        old_pid = backend_pid(conn)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    time.sleep(0.2)  # let the termination notice reach the idle socket

    with database.connection() as conn:
        new_pid = backend_pid(conn)
    database.close()

    assert new_pid != old_pid


def test_a_connection_broken_during_use_is_not_reused(database_url):
    database = db.Database(database_url)
    with database.connection() as conn:
        old_pid = backend_pid(conn)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with database.connection() as conn:
        assert backend_pid(conn) != old_pid
    database.close()


def test_an_open_transaction_is_rolled_back_before_reuse(database_url):
    database = db.Database(database_url)
    with database.connection() as conn:
        conn.autocommit = False
        conn.execute("CREATE TEMP TABLE scratch (id int)")
    with database.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)
    database.close()


def test_threads_get_their_own_connections(database_url):
    database = db.Database(database_url)
    errors: list[BaseException] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(25):
                with database.connection() as conn, conn.transaction():
                    pid = backend_pid(conn)
                    conn.execute("SELECT pg_sleep(0.001)")
                    assert backend_pid(conn) == pid
                with lock:
                    pids.add(pid)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.close()

    assert errors == []
    assert 1 <= len(pids) <= 8


def test_a_refused_connection_names_host_and_database_but_not_the_password():
    # Nothing listens on port 1: the connection is refused at once.
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect("postgresql://mdw:s3cret-pw@127.0.0.1:1/warehouse", connect_timeout=3)

    assert caught.value.message.startswith('cannot connect to database "warehouse" on 127.0.0.1:1:')
    assert "s3cret-pw" not in caught.value.message


def test_a_silent_server_is_given_up_on_after_the_connect_timeout():
    # The kernel completes the TCP handshake for the listening socket, but nothing ever reads
    # or answers: without a connect timeout the call would wait forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()

        with pytest.raises(DatabaseUnavailable) as caught:
            db.connect(f"postgresql://mdw:s3cret-pw@127.0.0.1:{port}/warehouse", connect_timeout=1)

        waited = time.monotonic() - started

    assert caught.value.message == (
        f'cannot connect to database "warehouse" on 127.0.0.1:{port}: connection timeout expired'
    )
    assert "s3cret-pw" not in caught.value.message
    # Only proves the call returns instead of hanging; the bound is far above the timeout.
    assert waited < 20


def test_describe_target_never_shows_the_password():
    assert (
        db.describe_target("host=db.internal port=6543 dbname=mdw user=app password=hunter2")
        == 'database "mdw" on db.internal:6543'
    )


def settings(**overrides) -> Settings:
    return msgspec.structs.replace(Settings.from_env({}), **overrides)


def test_database_url_wins():
    assert db.resolve_database_url(settings(database_url="postgresql://x/y", in_lambda=True)) == (
        "postgresql://x/y"
    )


def test_lambda_without_database_settings_is_a_clear_error():
    with pytest.raises(
        ConfigError, match="no database configured: set DATABASE_URL or DATABASE_SECRET_ARN"
    ):
        db.resolve_database_url(settings(in_lambda=True))


@pytest.mark.skipif(
    bool(os.environ.get("TEST_DATABASE_SERVER_URL")),
    reason="this pass runs against an external server, not the embedded one",
)
def test_embedded_server_keeps_its_data_under_the_data_dir(database_url):
    url = db.embedded_server_url(PROJECT_ROOT / ".data", database="postgres")

    assert (PROJECT_ROOT / ".data" / "pg" / "PG_VERSION").read_text().strip() == "16"
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("16")


def test_an_unparseable_url_is_a_configuration_error_that_hides_the_password():
    with pytest.raises(ConfigError) as caught:
        db.connect("postgresql://mdw:hunter2%zz@127.0.0.1:5432/mdw")

    assert caught.value.message.startswith("the database URL is not a valid connection string")
    assert "hunter2" not in caught.value.message
