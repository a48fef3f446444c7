"""How every function reaches PostgreSQL, within time bounds, and what a fault looks like.

Connections are opened lazily, kept for warm invocations, and handed out one per thread (Chalice's
local server is threaded). A connection that broke during use is dropped. Before reuse, an idle
connection whose socket has something to read (the server closed it or sent a termination
notice) or that sat idle long enough to have been cut silently by a proxy is pinged, and replaced
if the ping fails; a dropped connection is thus replaced on next use without a round trip on
every request.

Every pooled connection is bounded in time (docs/DEPLOYMENT.md, "Timeouts and failover"): the
server cancels a statement after `statement_timeout` and a lock wait after `lock_timeout`; TCP
keepalives and `tcp_user_timeout` notice a peer that vanished; and since a stopped (frozen)
server can enforce none of its own timeouts, the client gives up on any answer that takes longer
than the statement timeout plus a second. After a connect fails or the server stops answering,
the database counts as down for a moment, and connections are refused at once instead of each
waiting the full timeout again (so the audit write after a failed view costs nothing).

Connections run in autocommit mode: the boundary (a request, a job, a CLI command) owns the
transaction, through `read`/`write` (which retry what is safe to retry) or `with
conn.transaction():`; repositories never commit. Any database failure leaves this module as
`DatabaseUnavailable` (503, `Retry-After`) with a message safe for the public; the details,
password masked, go to the log.
"""

from __future__ import annotations

import logging
import os
import random
import re
import select
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, unquote

import msgspec
import psycopg
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chalicelib.config import Settings, get_settings
from chalicelib.errors import ConfigError, DatabaseCredentialsRefused, DatabaseUnavailable

log = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]
T = TypeVar("T")
RV = TypeVar("RV")

EMBEDDED_DATABASE = "mdw"
_PING_AFTER_IDLE_SECONDS = 30.0
# A Lambda container uses one; `chalice local` runs a thread per request, and keeping more idle
# connections there saves a reconnect (a few ms) per concurrent request.
_MAX_IDLE_CONNECTIONS = 32
# How much longer than the statement timeout the client waits for any answer: the server's own
# cancellation normally arrives first; this catches a server that cannot act at all.
_REPLY_MARGIN_SECONDS = 1.0
# After a failed connect or an unanswered statement, connections are refused at once for this
# long: requests meanwhile answer 503 immediately instead of each waiting a full timeout.
_KNOWN_DOWN_SECONDS = 1.0
# Deadlocks (40P01) and serialization failures (40001) roll the transaction back; it is run again
# up to this many times, after a random pause of up to 20, 40, 80 ms, so the contenders part.
_CONFLICT_RETRIES = 3
_CONFLICT_BACKOFF_SECONDS = 0.02
_POLL_SECONDS = 0.1  # how often a wait looks up from the socket (psycopg's own default)

NO_ANSWER = "the database did not answer in time; retry shortly"
TOO_SLOW = "the database could not complete the request in time; retry shortly"
CONFLICT = "the database could not complete the request because of concurrent changes; retry it"
COMMIT_UNKNOWN = (
    "the connection to the database was lost while the change was being committed: it may or "
    "may not have been applied; check, then retry"
)


class ConnectionLost(DatabaseUnavailable):
    """The connection broke: the server rolled back whatever the transaction had not committed."""


class NoAnswer(DatabaseUnavailable):
    """The server stopped answering (frozen, or the network to it is gone)."""


class TransactionConflict(DatabaseUnavailable):
    """A deadlock or serialization failure: the transaction was rolled back; safe to run again."""


# --- Keeping the password out of every message -------------------------------------------------

_URL_DELIMITERS = re.compile(r"[/@:?#%&=\s]+")
_MASK = "***"
# Fragments shorter than this are not masked on their own: masking every short piece would
# garble the log beyond use, and two characters say next to nothing about a password.
_MIN_FRAGMENT = 3


def _passwords_as_written(conninfo: str) -> tuple[str | None, set[str]]:
    """The password as libpq reads `conninfo`, and as a URL's user-info part may have meant it
    (split at each `@`, raw and percent-decoded)."""
    try:
        parsed = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        parsed = None
    written: set[str] = set()
    _, scheme_separator, rest = conninfo.partition("://")
    if scheme_separator:  # key=value strings: libpq's quoting leaves no doubt
        for at in (i for i, char in enumerate(rest) if char == "@"):
            user_info = rest[:at]
            if ":" in user_info:
                raw = user_info.split(":", 1)[1]
                written.update({raw, unquote(raw)})
    return (str(parsed) if parsed else None), written


def password_misread(conninfo: str) -> bool:
    """Did libpq read another password than the URL was meant to hold (an unencoded reserved
    character moved part of it into host, port or database)?"""
    parsed, written = _passwords_as_written(conninfo)
    return bool(written - {parsed, quote(parsed or "", safe="")})


def password_candidates(conninfo: str) -> set[str]:
    """Every string that may be (part of) the password in `conninfo`, however it was written.

    A URL whose password has an unencoded `/ @ %` is parsed by libpq into other fields (host,
    port, dbname), so libpq's own messages may quote pieces of it. So each way of splitting the
    user-info part counts, raw and percent-decoded, and when libpq read the password otherwise
    than as written, so does each piece of it between delimiters.
    """
    parsed, written = _passwords_as_written(conninfo)
    found = written | ({parsed} if parsed else set())
    if password_misread(conninfo):
        found.update(
            piece
            for value in list(found)
            for piece in _URL_DELIMITERS.split(value)
            if len(piece) >= _MIN_FRAGMENT
        )
    return {value for value in found if value}


def redact(text: str, conninfo: str | None = None, *, password: str | None = None) -> str:
    """`text` with every password candidate of `conninfo`, and `password` (a connection's
    exact one) as is and percent-encoded, masked."""
    secrets = password_candidates(conninfo) if conninfo else set()
    if password:
        secrets |= {password, quote(password, safe="")}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def describe_target(conninfo: str) -> str:
    """`database "x" on host:port`, for the log: never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the configured database (unparseable DATABASE_URL)"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return redact(f'database "{params.get("dbname", "?")}" on {host}:{port}', conninfo)


# --- Time bounds ----------------------------------------------------------------------------


class SessionLimits(msgspec.Struct, frozen=True):
    """What bounds the time a connection can hang (DESIGN.md §9 names the libpq parameters)."""

    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 3_000
    tcp_user_timeout_ms: int = 10_000
    keepalives_idle_seconds: int = 30
    keepalives_interval_seconds: int = 10
    keepalives_count: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            statement_timeout_ms=settings.statement_timeout_ms,
            lock_timeout_ms=settings.lock_timeout_ms,
            tcp_user_timeout_ms=settings.tcp_user_timeout_ms,
            keepalives_idle_seconds=settings.keepalives_idle_seconds,
            keepalives_interval_seconds=settings.keepalives_interval_seconds,
            keepalives_count=settings.keepalives_count,
        )

    @classmethod
    def for_migrations(cls, settings: Settings) -> SessionLimits:
        """The migration runner's own, longer, statement and lock timeouts (it sets them on
        the session too), and the same answer deadline and TCP bounds above them."""
        return msgspec.structs.replace(
            cls.from_settings(settings),
            statement_timeout_ms=settings.migration_statement_timeout_ms,
            lock_timeout_ms=settings.migration_lock_timeout_ms,
        )

    @property
    def reply_timeout_seconds(self) -> float:
        return self.statement_timeout_ms / 1000 + _REPLY_MARGIN_SECONDS

    def parameters(self, conninfo: str) -> dict[str, Any]:
        """Connection parameters to add to `conninfo`; a parameter the URL sets itself wins, and
        its own `options` come after these, so its `-c` settings win too."""
        given = conninfo_to_dict(conninfo)
        options = (
            f"-c statement_timeout={self.statement_timeout_ms} "
            f"-c lock_timeout={self.lock_timeout_ms}"
        )
        if given.get("options"):
            options += f" {given['options']}"
        defaults: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_seconds,
            "keepalives_interval": self.keepalives_interval_seconds,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout_ms,
        }
        return {
            **{name: value for name, value in defaults.items() if name not in given},
            "options": options,
        }


class _Unanswered(psycopg.OperationalError):
    """Raised inside psycopg when the reply deadline passed; translated to NoAnswer."""


class BoundedConnection(psycopg.Connection[Any]):
    """A connection that stops waiting for an answer after `reply_timeout` seconds.

    libpq waits on the socket for as long as it takes, and a frozen server's kernel still
    acknowledges every packet, so neither its statement timeout nor TCP's can end the wait.
    """

    reply_timeout: float | None = None

    def wait(
        self, gen: PQGen[RV], interval: float = _POLL_SECONDS, timeout: float | None = None
    ) -> RV:
        try:
            return super().wait(
                gen, interval=interval, timeout=self.reply_timeout if timeout is None else timeout
            )
        except psycopg.OperationalError:
            if self.pgconn.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
                raise  # the server answered (with an error) or the connection broke
            # Still waiting for the answer: the connection's state is unknown; close it.
            self.pgconn.finish()
            raise _Unanswered(f"no answer within {self.reply_timeout} s") from None


# --- Opening connections ---------------------------------------------------------------------


def connect(
    conninfo: str,
    *,
    connect_timeout: int = 5,
    autocommit: bool = True,
    limits: SessionLimits | None = None,
) -> Connection:
    """Open one connection, turning failure into DatabaseUnavailable with a safe message.

    With `limits`, the session gets its statement and lock timeouts, TCP keepalives and user
    timeout, and a deadline for every answer; without, it is a plain connection (the migration
    runner sets its own, much longer, timeouts).
    """
    try:
        if limits is None:
            return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=connect_timeout)
        conn = BoundedConnection.connect(
            conninfo,
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            **limits.parameters(conninfo),
        )
        conn.reply_timeout = limits.reply_timeout_seconds
        return conn
    except psycopg.ProgrammingError:
        # libpq's message quotes the offending part of the string, which may be the password.
        raise ConfigError(
            "the database URL is not a valid connection string (percent-encode reserved "
            "characters such as % @ : / in the password)"
        ) from None
    except psycopg.OperationalError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if password_misread(conninfo):
            reason += " (DATABASE_URL: percent-encode / @ : % in the password)"
        # libpq reports no SQLSTATE for a failed connection attempt, only the server's text.
        refused = "password authentication failed" in reason
        log.warning(
            "database unavailable: cannot connect to %s: %s",
            describe_target(conninfo),
            redact(reason or "connection failed", conninfo),
        )
        raise (DatabaseCredentialsRefused if refused else DatabaseUnavailable)() from None


def _has_unread_data(conn: Connection) -> bool:
    """An idle connection has nothing to read unless the server spoke first: a termination
    notice, or the socket closing. Checking costs a system call, not a round trip."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# 40P01 and 40001: the server rolled the transaction back, so running it again is safe.
_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def _unavailable(
    exc: psycopg.OperationalError, conn: Connection | None, conninfo: str | None = None
) -> DatabaseUnavailable:
    """The public face of a failure during use; the log gets the details, password masked."""
    error: DatabaseUnavailable
    if isinstance(exc, _Unanswered):
        error = NoAnswer(NO_ANSWER)
    elif isinstance(exc, _CONFLICTS):
        error = TransactionConflict(CONFLICT)
    elif isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        error = DatabaseUnavailable(TOO_SLOW)  # statement_timeout, lock_timeout
    elif conn is None or conn.closed or conn.broken:
        error = ConnectionLost()
    else:
        error = DatabaseUnavailable()
    password = None if conn is None or conn.closed else conn.info.password
    sqlstate = getattr(exc, "sqlstate", None) or "-"
    log.warning(
        "database error (%s, SQLSTATE %s): %s",
        type(error).__name__,
        sqlstate,
        redact(str(exc).strip(), conninfo, password=password),
    )
    return error


@contextmanager
def _translated(conn: Connection | None, conninfo: str | None = None) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise _unavailable(exc, conn, conninfo) from None


class ConnectionSource(Protocol):
    def connection(self) -> Any: ...


class Database:
    """A small per-container pool: idle connections are reused, broken ones discarded."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: int = 5,
        limits: SessionLimits | None = None,
        reread_conninfo: Callable[[], str] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.limits = limits or SessionLimits.from_settings(get_settings())
        # Where the connection string came from a secret: read it again when the password is
        # refused, since a rotation changes it under warm containers.
        self._reread_conninfo = reread_conninfo
        self._idle: list[tuple[Connection, float]] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    def _mark_down(self) -> None:
        """Refuse connections for a moment, and drop idle ones: they lead to the same server."""
        with self._lock:
            self._down_until = time.monotonic() + _KNOWN_DOWN_SECONDS
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _acquire(self) -> Connection:
        if time.monotonic() < self._down_until:
            raise DatabaseUnavailable()
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
            except _Unanswered as exc:
                self._mark_down()
                raise _unavailable(exc, conn, self.conninfo) from None
            except psycopg.Error:
                conn.close()
        try:
            return self._connect()
        except DatabaseUnavailable:
            self._mark_down()
            raise

    def _connect(self) -> Connection:
        try:
            return connect(self.conninfo, connect_timeout=self.connect_timeout, limits=self.limits)
        except DatabaseCredentialsRefused:
            if self._reread_conninfo is None:
                raise
        log.warning("the database refused the password; reading the database secret again")
        self.conninfo = self._reread_conninfo()
        return connect(self.conninfo, connect_timeout=self.connect_timeout, limits=self.limits)

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
            with _translated(conn, self.conninfo):
                yield conn
        except NoAnswer:
            self._mark_down()
            raise
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


@contextmanager
def command_session(
    settings: Settings | None = None, *, limits: SessionLimits | None = None
) -> Iterator[Connection]:
    """A connection of its own for a command (the CLI, the migration job), with the pool's
    bounds unless `limits` says otherwise, closed at the end. A frozen or unreachable database
    ends the command with DatabaseUnavailable (a message, not a traceback) instead of hanging
    it."""
    settings = settings or get_settings()
    conninfo = resolve_database_url(settings)
    conn = connect(
        conninfo,
        connect_timeout=settings.connect_timeout_seconds,
        limits=limits or SessionLimits.from_settings(settings),
    )
    with conn, _translated(conn, conninfo):
        yield conn


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
                limits=SessionLimits.from_settings(settings),
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
    """A connection for one unit of work; open a transaction on it with `conn.transaction()`.

    Nothing here is retried: units of work that can be should use `read` or `write`."""
    with get_database().connection() as conn, _translated(conn):
        yield conn


def read(work: Callable[[Connection], T], *, one_snapshot: bool = True) -> T:
    """Run read-only `work` and return its result.

    A connection lost before or during it is replaced and `work` runs once more; a deadlock or
    serialization failure runs it again (bounded, with jitter). `one_snapshot` runs it in one
    REPEATABLE READ, READ ONLY transaction, so all its statements see the same data (under
    READ COMMITTED each statement would see the latest), at no extra round trip: the isolation
    rides on the BEGIN. `work` may run more than once: it must do nothing but database work.
    """
    return _run(work, writes=False, transaction=one_snapshot)


def write(work: Callable[[Connection], T]) -> T:
    """Run `work` in one transaction, commit it and return its result.

    A deadlock or serialization failure runs it again (bounded, with jitter), and so does a
    connection lost before the commit was sent (the server rolled the transaction back). A
    connection lost during the commit answers 503: the change may or may not have been
    applied. `work` may run more than once: it must do nothing but database work.
    """
    return _run(work, writes=True, transaction=True)


@contextmanager
def _snapshot(conn: Connection, *, enabled: bool) -> Iterator[None]:
    """The next BEGIN on `conn` opens a REPEATABLE READ, READ ONLY transaction. (A connection
    already inside a transaction, as the tests' pinned one, gets a savepoint instead.)"""
    if not enabled or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        yield
    finally:
        if not conn.closed:
            conn.isolation_level = None
            conn.read_only = None


def _run(work: Callable[[Connection], T], *, writes: bool, transaction: bool) -> T:
    conflicts = 0
    lost = 0
    while True:
        committing = False
        try:
            with connection() as conn:
                if not transaction:
                    return work(conn)
                with _snapshot(conn, enabled=not writes), conn.transaction():
                    result = work(conn)
                    committing = True  # an error from here on comes from the COMMIT
                return result
        except TransactionConflict:
            conflicts += 1
            if conflicts > _CONFLICT_RETRIES:
                raise
            time.sleep(random.uniform(0, _CONFLICT_BACKOFF_SECONDS * 2 ** (conflicts - 1)))
        except ConnectionLost:
            if writes and committing:
                raise DatabaseUnavailable(COMMIT_UNKNOWN) from None
            lost += 1
            if lost > 1:
                raise
            log.info("database connection lost; running the unit of work again")
