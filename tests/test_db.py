from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import quote

import msgspec
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from chalicelib import db
from chalicelib.config import PROJECT_ROOT, Settings
from chalicelib.errors import ConfigError, DatabaseUnavailable, NotFound


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


def test_threads_holding_connections_at_once_hold_different_ones(database_url):
    """Eight threads each hold a connection at the same moment (a barrier inside the checkout),
    round after round: any connection handed to two threads at once shows up as a repeated
    backend in a round. Between rounds every connection goes back to the pool, so rounds after
    the first exercise reuse of idle connections, which must be the first round's own."""
    database = db.Database(database_url)
    threads_count, rounds = 8, 5
    errors: list[BaseException] = []
    held: list[list[tuple[int, int]]] = [[] for _ in range(rounds)]
    lock = threading.Lock()
    all_holding = threading.Barrier(threads_count, timeout=10)
    all_released = threading.Barrier(threads_count, timeout=10)

    def work() -> None:
        try:
            for round_ in range(rounds):
                with database.connection() as conn, conn.transaction():
                    pid = backend_pid(conn)
                    with lock:
                        held[round_].append((id(conn), pid))
                    all_holding.wait()
                    conn.execute("SELECT pg_sleep(0.001)")
                    assert backend_pid(conn) == pid
                all_released.wait()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
            all_holding.abort()
            all_released.abort()

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.close()

    assert errors == []
    for pairs in held:
        assert len({connection for connection, _ in pairs}) == threads_count
        assert len({pid for _, pid in pairs}) == threads_count
    assert all({pid for _, pid in pairs} == {pid for _, pid in held[0]} for pairs in held)


def test_a_refused_connection_is_503_naming_nothing_and_logged_without_the_password(caplog):
    # Nothing listens on port 1: the connection is refused at once.
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect("postgresql://mdw:s3cret-pw@127.0.0.1:1/warehouse", connect_timeout=3)

    assert caught.value.message == "the database is unavailable; retry shortly"
    assert caught.value.retry_after == 1
    assert 'cannot connect to database "warehouse" on 127.0.0.1:1: ' in caplog.text
    assert "s3cret-pw" not in caplog.text


def test_a_silent_server_is_given_up_on_after_the_connect_timeout(caplog):
    # The kernel completes the TCP handshake for the listening socket, but nothing ever reads
    # or answers: without a connect timeout the call would wait forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()

        with pytest.raises(DatabaseUnavailable) as caught:
            db.connect(f"postgresql://mdw:s3cret-pw@127.0.0.1:{port}/warehouse", connect_timeout=2)

        waited = time.monotonic() - started

    assert caught.value.message == "the database is unavailable; retry shortly"
    assert (
        f'cannot connect to database "warehouse" on 127.0.0.1:{port}: connection timeout expired'
    ) in caplog.text
    assert "s3cret-pw" not in caplog.text
    # The documented bound of a connect: the timeout, plus scheduling slack.
    assert 1.9 <= waited < 3.5


def test_describe_target_never_shows_the_password():
    assert (
        db.describe_target("host=db.internal port=6543 dbname=mdw user=app password=hunter2")
        == 'database "mdw" on db.internal:6543'
    )


# A password with each reserved character, written into the URL raw and percent-encoded. Raw,
# libpq reads parts of it as host, port or database name and quotes those in its messages.
PASSWORD_SHAPES = {
    "slash": "Sup3r/S3cret",
    "at": "Sup3r@S3cret",
    "colon": "Sup3r:S3cret",
    "percent": "Sup3r%S3cret",
}


def url_with(password: str, *, encoded: bool, port: int = 1) -> str:
    written = quote(password, safe="") if encoded else password
    return f"postgresql://app:{written}@127.0.0.1:{port}/mdw"


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "encoded"])
@pytest.mark.parametrize("shape", sorted(PASSWORD_SHAPES))
def test_no_shape_of_password_survives_in_what_is_logged_or_raised(shape, encoded, caplog):
    password = PASSWORD_SHAPES[shape]
    url = url_with(password, encoded=encoded)

    with pytest.raises((DatabaseUnavailable, ConfigError)) as caught:
        db.connect(url, connect_timeout=2)

    said = caught.value.message + "\n" + caplog.text + "\n" + db.describe_target(url)
    for piece in (password, quote(password, safe=""), "Sup3r", "S3cret"):
        assert piece not in said


def test_password_candidates_cover_every_reading_of_a_url():
    # Raw: split at the first or the last "@", and every piece libpq may have put elsewhere.
    assert db.password_candidates("postgresql://app:abc/cde@efg@host:5432/mdw") == {
        "abc/cde@efg",
        "abc/cde",
        "abc",
        "cde",
        "efg",
    }
    # Encoded, or raw where libpq reads it right: the password as written and as decoded, and no
    # pieces (a piece such as "word" would mask "password" in libpq's messages).
    assert db.password_candidates("postgresql://app:p%40ss%2Fword@host:5432/mdw") == {
        "p%40ss%2Fword",
        "p@ss/word",
    }
    assert db.password_candidates("postgresql://app:pass:word@host:5432/mdw") == {"pass:word"}
    # Key/value form: what libpq parses.
    assert db.password_candidates("host=h dbname=mdw user=app password='hunter 2'") == {"hunter 2"}


def test_redact_masks_the_pieces_libpq_quotes_from_a_raw_url():
    url = "postgresql://app:abc/cde@efg@host:5432/mdw"

    assert db.redact('port "abc"; database "cde@efg@host:5432/mdw"', url) == (
        'port "***"; database "***@***@host:5432/mdw"'
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


# --- time bounds ------------------------------------------------------------------------------


TOO_SLOW = "the database could not complete the request in time; retry shortly"


def limits(**overrides) -> db.SessionLimits:
    return msgspec.structs.replace(db.SessionLimits(), **overrides)


def test_every_pooled_connection_carries_the_configured_bounds(database_url):
    database = db.Database(
        database_url,
        limits=limits(
            statement_timeout_ms=4321,
            lock_timeout_ms=1234,
            tcp_user_timeout_ms=7000,
            keepalives_idle_seconds=11,
            keepalives_interval_seconds=4,
            keepalives_count=5,
        ),
    )
    with database.connection() as conn:
        server_side = (
            conn.execute("SHOW statement_timeout").fetchone(),
            conn.execute("SHOW lock_timeout").fetchone(),
        )
        client_side = conn.info.get_parameters()
    database.close()

    assert server_side == (("4321ms",), ("1234ms",))
    assert {name: client_side[name] for name in TCP_PARAMETERS} == {
        "keepalives": "1",
        "keepalives_idle": "11",
        "keepalives_interval": "4",
        "keepalives_count": "5",
        "tcp_user_timeout": "7000",
    }


TCP_PARAMETERS = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


def test_a_command_session_carries_the_settings_bounds_and_migrations_their_own(database_url):
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "DATABASE_STATEMENT_TIMEOUT_MS": "2500",
            "DATABASE_LOCK_TIMEOUT_MS": "700",
            "MIGRATION_STATEMENT_TIMEOUT_MS": "90000",
            "MIGRATION_LOCK_TIMEOUT_MS": "4000",
        }
    )
    migration_limits = db.SessionLimits.for_migrations(settings)

    def bounds(session_limits: db.SessionLimits | None) -> tuple[object, ...]:
        with db.command_session(settings, limits=session_limits) as conn:
            shown = tuple(
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("statement_timeout", "lock_timeout")
            )
            return shown, conn.reply_timeout, conn.info.get_parameters()["tcp_user_timeout"]

    assert bounds(None) == (("2500ms", "700ms"), 3.5, "10000")
    assert bounds(migration_limits) == (("90s", "4s"), 91.0, "10000")


def test_a_command_session_closes_its_connection_and_speaks_in_app_errors(database_url):
    settings = Settings.from_env({"DATABASE_URL": database_url})
    with pytest.raises(db.DatabaseUnavailable), db.command_session(settings) as conn:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert conn.closed


def test_the_settings_are_the_defaults_of_every_container_database(database_url, set_env):
    set_env(DATABASE_STATEMENT_TIMEOUT_MS="2500", DATABASE_LOCK_TIMEOUT_MS="700")
    db.set_database(None)
    try:
        with db.connection() as conn:
            shown = [
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("statement_timeout", "lock_timeout")
            ]
    finally:
        db.set_database(None)

    assert shown == ["2500ms", "700ms"]


def test_parameters_the_url_sets_itself_win(database_url):
    url = make_conninfo(database_url, keepalives_idle="99", options="-c lock_timeout=555")
    database = db.Database(url, limits=limits(lock_timeout_ms=1234))
    with database.connection() as conn:
        lock_timeout = conn.execute("SHOW lock_timeout").fetchone()
        statement_timeout = conn.execute("SHOW statement_timeout").fetchone()
        idle = conn.info.get_parameters()["keepalives_idle"]
    database.close()

    assert (lock_timeout, statement_timeout, idle) == (("555ms",), ("10s",), "99")


def run_on(database: db.Database, statement: str) -> None:
    with database.connection() as conn:
        conn.execute(statement)


def test_a_statement_past_the_statement_timeout_is_503_and_the_connection_stays(database_url):
    database = db.Database(database_url, limits=limits(statement_timeout_ms=200))
    with database.connection() as conn:
        pid = backend_pid(conn)

    with pytest.raises(DatabaseUnavailable) as caught:
        run_on(database, "SELECT pg_sleep(5)")

    assert caught.value.message == TOO_SLOW
    with database.connection() as conn:
        assert backend_pid(conn) == pid
    database.close()


def test_a_lock_wait_past_the_lock_timeout_is_503(database_url):
    database = db.Database(database_url, limits=limits(lock_timeout_ms=200))
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(424242)")  # held until holder's rollback
        with pytest.raises(DatabaseUnavailable) as caught:
            run_on(database, "SELECT pg_advisory_xact_lock(424242)")
    database.close()

    assert caught.value.message == TOO_SLOW


def test_a_server_that_does_not_answer_is_given_up_on_and_then_known_down(database_url):
    # The URL turns the server's own statement timeout off, as a frozen server's would be:
    # only the client's deadline (statement timeout + 1 s) ends the wait.
    url = make_conninfo(database_url, options="-c statement_timeout=0")
    database = db.Database(url, limits=limits(statement_timeout_ms=500))
    with database.connection() as conn:
        pass  # one idle connection in the pool
    started = time.monotonic()
    with pytest.raises(db.NoAnswer) as caught:
        run_on(database, "SELECT pg_sleep(4)")
    gave_up_after = time.monotonic() - started

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable), database.connection():
        pass
    refused_after = time.monotonic() - started
    time.sleep(1.1)  # once the moment has passed, connections are made again
    with database.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    database.close()

    assert caught.value.message == "the database did not answer in time; retry shortly"
    assert 1.4 <= gave_up_after < 3.0
    assert refused_after < 0.1


def test_a_failed_connect_makes_the_next_ones_fail_at_once():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        database = db.Database(
            f"postgresql://mdw@127.0.0.1:{silent.getsockname()[1]}/x", connect_timeout=2
        )
        with pytest.raises(DatabaseUnavailable), database.connection():
            pass
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable), database.connection():
            pass
        second = time.monotonic() - started

    assert second < 0.1


# --- units of work ------------------------------------------------------------------------------


@pytest.fixture
def scratch(empty_database_url):
    """A table in a database of its own; the container's database points at it."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE scratch (id int PRIMARY KEY, value int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO scratch (id) VALUES (1), (2)")
    db.set_database(db.Database(empty_database_url))
    yield empty_database_url
    db.set_database(None)


def rows(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, value FROM scratch ORDER BY id").fetchall()


def terminate_own_backend(conn: db.Connection) -> None:
    conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_a_read_whose_connection_dies_is_run_again_on_a_new_one(scratch):
    pids: list[int] = []

    def work(conn):
        pids.append(backend_pid(conn))
        if len(pids) == 1:
            terminate_own_backend(conn)
        return conn.execute("SELECT count(*) FROM scratch").fetchone()[0]

    assert db.read(work) == 2
    assert len(pids) == 2
    assert pids[0] != pids[1]


def test_a_read_whose_connection_dies_twice_is_503(scratch):
    calls = []

    def work(conn):
        calls.append(1)
        terminate_own_backend(conn)

    with pytest.raises(db.ConnectionLost) as caught:
        db.read(work)

    assert len(calls) == 2
    assert caught.value.status == 503
    assert caught.value.message == "the database is unavailable; retry shortly"


def test_a_write_whose_connection_dies_before_the_commit_is_applied_once(scratch):
    calls = []

    def work(conn):
        calls.append(1)
        conn.execute("UPDATE scratch SET value = value + 1 WHERE id = 1")
        if len(calls) == 1:
            terminate_own_backend(conn)

    db.write(work)

    assert len(calls) == 2
    assert rows(scratch) == [(1, 1), (2, 0)]


def test_a_write_whose_connection_dies_in_the_commit_is_503_and_not_repeated(scratch):
    # A deferred constraint trigger runs inside COMMIT: it ends the session there.
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION end_session() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1);"
            " RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER end_session_at_commit AFTER UPDATE ON scratch"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION end_session()"
        )
    calls = []

    def work(conn):
        calls.append(1)
        conn.execute("UPDATE scratch SET value = value + 1 WHERE id = 1")

    with pytest.raises(DatabaseUnavailable) as caught:
        db.write(work)

    assert len(calls) == 1
    assert caught.value.status == 503
    assert caught.value.retry_after == 1
    assert caught.value.message == (
        "the connection to the database was lost while the change was being committed: it "
        "may or may not have been applied; check, then retry"
    )


def test_a_deadlock_is_retried_until_both_transactions_commit(scratch):
    both_hold_one_row = threading.Barrier(2, timeout=10)
    attempts = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def transfer(name: str, first: int, second: int) -> None:
        def work(conn):
            attempts[name] += 1
            conn.execute("UPDATE scratch SET value = value + 1 WHERE id = %s", (first,))
            if attempts[name] == 1:
                both_hold_one_row.wait()
            conn.execute("UPDATE scratch SET value = value + 1 WHERE id = %s", (second,))

        try:
            db.write(work)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [
        threading.Thread(target=transfer, args=("a", 1, 2)),
        threading.Thread(target=transfer, args=("b", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    # The deadlock's victim ran again. Its rerun can meet the other transaction once more (its
    # first UPDATE may take the row before the survivor's waiting one does), so a second
    # deadlock, and a third attempt of either, is possible too: the retries are bounded, not one.
    assert sum(attempts.values()) >= 3
    # Whatever the number of attempts, each transfer was applied exactly once.
    assert rows(scratch) == [(1, 2), (2, 2)]


def test_a_serialization_failure_that_persists_is_503_after_bounded_retries(scratch):
    calls = []

    def work(conn):
        calls.append(1)
        conn.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")

    with pytest.raises(db.TransactionConflict) as caught:
        db.write(work)

    assert len(calls) == 4  # the first run and three retries
    assert caught.value.message == (
        "the database could not complete the request because of concurrent changes; retry it"
    )


def test_errors_of_the_work_itself_pass_through_without_a_retry(scratch):
    calls = []

    def work(conn):
        calls.append(1)
        raise NotFound("no such thing")

    with pytest.raises(NotFound):
        db.read(work)
    assert len(calls) == 1


def test_a_read_sees_one_snapshot(scratch):
    def work(conn):
        before = conn.execute("SELECT sum(value) FROM scratch").fetchone()[0]
        with psycopg.connect(scratch, autocommit=True) as other:
            other.execute("UPDATE scratch SET value = 10")
        return before, conn.execute("SELECT sum(value) FROM scratch").fetchone()[0]

    # The snapshot is taken by the first statement: the other session's change is not seen.
    assert db.read(work) == (0, 0)
    assert rows(scratch) == [(1, 10), (2, 10)]
