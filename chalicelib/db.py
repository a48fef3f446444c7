"""How every function reaches PostgreSQL.

Connections are opened lazily, kept for warm invocations, and handed out one per thread (Chalice's
local server is threaded). A connection that broke during use is dropped. Before reuse, an idle
connection whose socket has something to read (the server closed it or sent a termination
notice) or that sat idle long enough to have been cut silently by a proxy is pinged, and replaced
if the ping fails; a dropped connection is thus replaced on next use without a round trip on
every request.

Connections run in autocommit mode: the boundary (a request, a job, a CLI command) owns the
transaction with `with conn.transaction():`, and repositories never commit.
"""

from __future__ import annotations

import logging
import os
import select
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chalicelib.config import Settings, get_settings
from chalicelib.errors import ConfigError, DatabaseCredentialsRefused, DatabaseUnavailable

Connection = psycopg.Connection[Any]

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "mdw"
_PING_AFTER_IDLE_SECONDS = 30.0
# A Lambda container uses one; `chalice local` runs a thread per request, and keeping more idle
# connections there saves a reconnect (a few ms) per concurrent request.
_MAX_IDLE_CONNECTIONS = 32


def describe_target(conninfo: str) -> str:
    """`database "x" on host:port`, for error messages: never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the configured database (unparseable DATABASE_URL)"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return f'database "{params.get("dbname", "?")}" on {host}:{port}'


def connect(conninfo: str, *, connect_timeout: int = 5, autocommit: bool = True) -> Connection:
    """Open one connection, turning failure into DatabaseUnavailable with a safe message."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending part of the string, which may be the password.
        raise ConfigError(
            "the database URL is not a valid connection string (percent-encode reserved "
            "characters such as % @ : / in the password)"
        ) from None
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "connection failed"
        # libpq reports no SQLSTATE for a failed connection attempt, only the server's text.
        refused = "password authentication failed" in reason
        error = DatabaseCredentialsRefused if refused else DatabaseUnavailable
        raise error(f"cannot connect to {describe_target(conninfo)}: {reason}") from None


def _has_unread_data(conn: Connection) -> bool:
    """An idle connection has nothing to read unless the server spoke first: a termination
    notice, or the socket closing. Checking costs a system call, not a round trip."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class ConnectionSource(Protocol):
    def connection(self) -> Any: ...


class Database:
    """A small per-container pool: idle connections are reused, broken ones discarded."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: int = 5,
        reread_conninfo: Callable[[], str] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        # Where the connection string came from a secret: read it again when the password is
        # refused, since a rotation changes it under warm containers.
        self._reread_conninfo = reread_conninfo
        self._idle: list[tuple[Connection, float]] = []
        self._lock = threading.Lock()

    def _acquire(self) -> Connection:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, idle_since = self._idle.pop()
            if conn.closed or conn.broken:
                continue
            if time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS and not _has_unread_data(
                conn
            ):
                return conn
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        return self._connect()

    def _connect(self) -> Connection:
        try:
            return connect(self.conninfo, connect_timeout=self.connect_timeout)
        except DatabaseCredentialsRefused:
            if self._reread_conninfo is None:
                raise
        log.warning("the database refused the password; reading the database secret again")
        self.conninfo = self._reread_conninfo()
        return connect(self.conninfo, connect_timeout=self.connect_timeout)

    def _release(self, conn: Connection) -> None:
        if conn.closed or conn.broken:
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                conn.close()
                return
        with self._lock:
            if len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


_embedded_servers: dict[Path, Any] = {}
_embedded_lock = threading.Lock()


def embedded_server_url(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or join) the checkout's embedded PostgreSQL and return a URL for `database`.

    pgserver shares one server between the processes of a checkout and stops it when the last
    one exits; the data stays under `data_dir` between runs.
    """
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # pgserver keeps its cross-process lock in the user's runtime dir, and puts the server's
        # socket there when the data dir's own path is too long for one (Unix sockets allow
        # ~100 characters). Containers and CI often have no runtime dir: use a short private one.
        run_dir = Path(tempfile.gettempdir()) / f"mdw-runtime-{os.getuid()}"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        run_dir.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    try:
        import pgserver  # a laptop/test dependency, never shipped to Lambda
    except ImportError:
        raise ConfigError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL, or install it with `pip install 'mdw[local]'`"
        ) from None

    with _embedded_lock:
        pgdata = (data_dir / "pg").resolve()
        server = _embedded_servers.get(pgdata)
        if server is None:
            pgdata.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(pgdata)
            _embedded_servers[pgdata] = server
        admin_url: str = server.get_uri()
    ensure_database(admin_url, database)
    return make_conninfo(admin_url, dbname=database)


def ensure_database(admin_url: str, database: str) -> None:
    with connect(admin_url) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )
        except psycopg.errors.DuplicateDatabase:
            pass  # another process of this checkout created it first


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, else the RDS secret, else (never in Lambda) the embedded server."""
    if settings.database_url:
        return settings.database_url
    if settings.database_secret_arn:
        from chalicelib.secrets import database_url_from_secret

        return database_url_from_secret(settings.database_secret_arn, settings)
    if settings.in_lambda:
        raise ConfigError(
            "no database configured: set DATABASE_URL or DATABASE_SECRET_ARN for this function"
        )
    return embedded_server_url(settings.data_dir)


def _secret_rereader(settings: Settings) -> Callable[[], str] | None:
    """For a database reached through DATABASE_SECRET_ARN (and no DATABASE_URL): a fresh read
    of the secret."""
    arn = settings.database_secret_arn
    if settings.database_url or not arn:
        return None

    def reread() -> str:
        from chalicelib.secrets import database_url_from_secret

        return database_url_from_secret(arn, settings, refresh=True)

    return reread


_database: ConnectionSource | None = None
_database_lock = threading.Lock()


def get_database() -> ConnectionSource:
    global _database
    with _database_lock:
        if _database is None:
            settings = get_settings()
            _database = Database(
                resolve_database_url(settings),
                connect_timeout=settings.connect_timeout_seconds,
                reread_conninfo=_secret_rereader(settings),
            )
        return _database


def set_database(source: ConnectionSource | None) -> None:
    """Replace the container's connection source (tests pin one connection through this)."""
    global _database
    with _database_lock:
        previous, _database = _database, source
    if isinstance(previous, Database) and previous is not source:
        previous.close()


@contextmanager
def connection() -> Iterator[Connection]:
    """A connection for one unit of work; open a transaction on it with `conn.transaction()`."""
    with get_database().connection() as conn:
        yield conn
