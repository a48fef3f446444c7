"""Text from requests is stored as sent and printed safely: a path with escape sequences goes
through a real `chalice local` into the audit log, and `mdw keys audit` prints it escaped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.factories import make_key
from tests.faults.servers import AppServer, FaultyPostgres

# Clear the screen, a bell, a CSI in its one-byte C1 form, a bidi override, then text.
HOSTILE = "\x1b[2J\x07\u009b31m\u202eXYZ"


def raw_get(port: int, path: str, key: str) -> int:
    """A GET whose request line carries `path` as raw UTF-8 bytes, as a hostile client may send
    it (HTTP libraries refuse to); returns the status code."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1])


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, other than the line breaks of the output itself."""
    return [
        char
        for char in text
        if char != "\n" and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
    ]


def test_an_escape_sequence_path_is_kept_in_the_audit_log_and_printed_escaped(
    postgres: FaultyPostgres, app_server: Callable[..., AppServer]
):
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        created = make_key(conn, name="terminal")
    server = app_server()
    status = raw_get(server.port, f"/api/v1/historical/{HOSTILE}", created.raw_key)
    with psycopg.connect(postgres.app_url(), autocommit=True) as conn:
        stored = conn.execute(
            "SELECT path FROM api_key_audit WHERE key_id = %s AND event = 'request'",
            (created.key.id,),
        ).fetchall()
    env = {**os.environ, "DATABASE_URL": postgres.app_url()}
    mdw = str(Path(sys.executable).parent / "mdw")
    printed = [
        subprocess.run(
            [mdw, "keys", "audit", str(created.key.id), *options],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout.decode()
        for options in ([], ["--json"])
    ]

    assert status == 400  # not a ticker; the request still has its audit row
    # The local server reads the request line as Latin-1: each UTF-8 byte is a character, so
    # the C1 CSI arrives as "Â\x9b" and the override's bytes include the C1 control \x80.
    assert stored == [("/api/v1/historical/\x1b[2J\x07Â\x9b31mâ\x80®XYZ",)]
    table, as_json = printed
    assert raw_controls(table) == []
    assert raw_controls(as_json) == []
    assert "GET /api/v1/historical/\\x1b[2J\\x07Â\\x9b31mâ\\x80®XYZ" in table
    assert '"path": "/api/v1/historical/\\u001b[2J\\u0007Â\\u009b31mâ\\u0080®XYZ"' in as_json
