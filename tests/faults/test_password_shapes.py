"""A DATABASE_URL whose password has `/ @ : %` in it, percent-encoded or not, with the database
refusing it: the password is in no response, no log line of the server and no CLI output."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from chalicelib.config import PROJECT_ROOT
from chalicelib.keys.tokens import key_from_bytes
from tests.faults.conftest import FAULT_SETTINGS
from tests.faults.servers import AppServer, FaultyPostgres, call

# Wrong passwords (the server refuses them), one per reserved character.
PASSWORDS = {char: f"Wr0ng{char}Zq9s3cret" for char in "/@:%"}
SHAPES = [(char, encoded) for char in sorted(PASSWORDS) for encoded in (False, True)]
# A well-formed key (valid checksum) that no database holds: the authorizer must look it up.
SOME_KEY = key_from_bytes(bytes(32))


def forbidden(password: str) -> list[str]:
    return [password, quote(password, safe=""), "Wr0ng", "Zq9s3cret"]


def written(password: str, *, encoded: bool) -> str:
    return quote(password, safe="") if encoded else password


def mdw_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mdw"), "db", "status"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **FAULT_SETTINGS, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def apps(postgres: FaultyPostgres, tmp_path: Path):
    """One `chalice local` per shape of DATABASE_URL, started side by side."""

    def start(shape: tuple[str, bool]) -> AppServer:
        char, encoded = shape
        url = postgres.app_url(written(PASSWORDS[char], encoded=encoded))
        env = {**FAULT_SETTINGS, "DATABASE_URL": url}
        return AppServer(env, tmp_path / f"chalice-{ord(char)}-{encoded}.log")

    with ThreadPoolExecutor(max_workers=len(SHAPES)) as pool:
        servers = dict(zip(SHAPES, pool.map(start, SHAPES), strict=True))
    yield servers
    for server in servers.values():
        server.stop()


def test_no_shape_of_password_shows_in_responses_logs_or_cli_output(postgres, apps):
    def exercise(shape: tuple[str, bool]) -> tuple[str, str, str, subprocess.CompletedProcess]:
        char, encoded = shape
        app = apps[shape]
        health = call(app.url + "/health")
        symbols = call(app.url + "/api/v1/symbols", key=SOME_KEY)
        cli = mdw_cli(postgres.app_url(written(PASSWORDS[char], encoded=encoded)))
        assert health.status == 503
        assert health.body["error"]["code"] == "database_unavailable"
        assert symbols.status >= 500
        return health.raw.decode(), symbols.raw.decode(), app.log_text(), cli

    with ThreadPoolExecutor(max_workers=len(SHAPES)) as pool:  # one request at a time per server
        results = dict(zip(SHAPES, pool.map(exercise, SHAPES), strict=True))

    for (char, encoded), (health, symbols, server_log, cli) in results.items():
        said = "\n".join([health, symbols, server_log, cli.stdout, cli.stderr])
        for secret in forbidden(PASSWORDS[char]):
            assert secret not in said, (char, encoded, secret)
        assert cli.returncode == 1, (char, encoded, cli.stderr)
        assert cli.stderr.splitlines()[-1].startswith("Error: "), (char, encoded)
        assert "Traceback" not in said, (char, encoded)
        if encoded or char == ":":
            # libpq read the URL as meant: the server refused the password, and the log (and
            # the CLI's stderr) say where and why, with nothing of the password.
            target = f'cannot connect to database "mdw" on 127.0.0.1:{postgres.port}: '
            refused = 'password authentication failed for user "app"'
            for text in (server_log, cli.stderr):
                assert target in text, (char, encoded)
                assert refused in text, (char, encoded)
            assert cli.stderr.splitlines()[-1] == (
                "Error: the database is unavailable; retry shortly"
            )
