"""Processes the API key fault tests own: a PostgreSQL of their own whose log they read (for
deadlocks), and real `chalice local` servers pointed at it. Nothing here touches another
server, and every request has a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from chalicelib.config import PROJECT_ROOT
from chalicelib.migrations import run_migrations
from tests.conftest import free_port, wait_for_port
from tests.pgprocess import BIN, PostgresProcess

DATABASE = "mdw"


class LoggedPostgres(PostgresProcess):
    """A PostgreSQL of the test's own whose server log is kept, with deadlocks detected fast
    (deadlock_timeout 100 ms) so that a run of a few seconds would meet them."""

    def __init__(self) -> None:
        super().__init__()
        self.log_path = self.base / "postgres.log"

    def start(self) -> LoggedPostgres:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "postgres"),
                    *("-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1"),
                    *("-k", str(self.base), "-c", "fsync=off", "-c", "deadlock_timeout=100ms"),
                    *("-c", "max_connections=100"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LC_ALL": "C"},
                **self._as,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log_text()}") from None
                time.sleep(0.1)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(self.app_url, autocommit=True) as conn:
            run_migrations(conn)
        return self

    @property
    def app_url(self) -> str:
        return self.url(dbname=DATABASE)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class AppServer:
    """A real `chalice local` (a thread per request) on the given database."""

    def __init__(self, database_url: str, log_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = {**os.environ, "DATABASE_URL": database_url, **settings}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "chalice"),
                    *("local", "--stage", "local", "--no-autoreload"),
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, process=self.process)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def own_postgres() -> Iterator[LoggedPostgres]:
    server = LoggedPostgres().start()
    try:
        yield server
    finally:
        server.remove()


@contextmanager
def app_servers(postgres: LoggedPostgres, folder: Path) -> Iterator[Callable[..., AppServer]]:
    """`start(**settings)` starts a `chalice local` on `postgres`; all stop on exit."""
    started: list[AppServer] = []

    def start(**settings: str) -> AppServer:
        server = AppServer(postgres.app_url, folder / f"chalice-{len(started)}.log", **settings)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


class Answer(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def call(
    url: str,
    *,
    method: str = "GET",
    key: str | None = None,
    body: Any = None,
    timeout: float = 30.0,
) -> Answer:
    """One HTTP request to 127.0.0.1: status, headers and raw body."""
    headers: Mapping[str, str] = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, dict(error.headers), error.read())
