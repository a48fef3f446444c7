"""Processes the fault tests own: a PostgreSQL server of their own that they may freeze, stop,
restart and whose backends they may kill, and `chalice local` servers pointed at it. Nothing
here touches another server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from chalicelib.config import PROJECT_ROOT
from chalicelib.migrations import run_migrations
from tests.conftest import free_port, wait_for_port
from tests.pgprocess import BIN, PostgresProcess

DATABASE = "mdw"
ADMIN_PASSWORD = "admin-Pa55"
# The role the app connects as, with a password (scram): so a wrong password is refused.
APP_USER = "app"
APP_PASSWORD = "right-Pa55word"


class FaultyPostgres(PostgresProcess):
    """A PostgreSQL of the test's own that can be frozen (SIGSTOP of the postmaster and every
    backend), stopped fast (as a failover ends sessions) and started again on the same port."""

    def __init__(self) -> None:
        super().__init__(superuser_password=ADMIN_PASSWORD)
        self.log_path = self.base / "postgres.log"

    def start(self) -> FaultyPostgres:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "postgres"),
                    *("-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1"),
                    *("-k", str(self.base), "-c", "fsync=off", "-c", "deadlock_timeout=100ms"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LC_ALL": "C"},
                **self._as,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as in a failover or a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP the postmaster (so it forks nothing new), then every process it started:
        each backend is its own process group leader, so one signal to a group is not enough."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        assert self.process is not None
        postmaster = psutil.Process(self.process.pid)
        postmaster.send_signal(signum)
        for child in postmaster.children(recursive=True):
            try:
                child.send_signal(signum)
            except psutil.NoSuchProcess:
                pass  # a backend that ended since the list was taken

    def remove(self) -> None:
        if self.process is not None:
            self.thaw()
        super().remove()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def admin_url(self) -> str:
        return self.url(password=ADMIN_PASSWORD)

    def app_url(self, password: str = APP_PASSWORD) -> str:
        """The app's DATABASE_URL, `password` written into it as given."""
        return self.url(user=APP_USER, password=password, dbname=DATABASE)

    def create_app_database(self) -> None:
        """The app's role and database, migrated by the real runner."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(APP_USER), sql.Literal(APP_PASSWORD)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(APP_USER)
                )
            )
        with psycopg.connect(self.app_url(), autocommit=True) as conn:
            run_migrations(conn)

    def terminate_app_backends(self) -> int:
        """End every session of the app's role, as `pg_terminate_backend` in a failover does."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (APP_USER,),
            ).fetchall()
        return len(rows)


class AppServer:
    """A real `chalice local` process with the given settings."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "chalice"),
                    "local",
                    "--stage",
                    "local",
                    "--no-autoreload",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=PROJECT_ROOT,
                env={**os.environ, **env},
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


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], raw: bytes, elapsed: float):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.elapsed = elapsed

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
    """One HTTP request; the status, headers, raw body and the seconds it took."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return Answer(response.status, dict(response.headers), raw, time.monotonic() - started)
    except urllib.error.HTTPError as error:
        with error:  # it holds the connection: closing it leaves no socket for the GC
            raw = error.read()
        return Answer(error.code, dict(error.headers), raw, time.monotonic() - started)
