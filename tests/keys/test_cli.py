"""`mdw keys …` through click's CliRunner, on the session database (committed)."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from chalicelib.cli import main
from chalicelib.keys import access, tokens

pytestmark = pytest.mark.committed

KEY_PATTERN = re.compile(r"mdw_[0-9A-Za-z]{49}")


@pytest.fixture
def mdw(committed_db: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(main, ["keys", *args], input=input, catch_exceptions=False)

    return invoke


def stored_hashes(url: str) -> list[bytes]:
    with psycopg.connect(url) as conn:
        return [bytes(row[0]) for row in conn.execute("SELECT key_hash FROM api_keys")]


def test_create_prints_the_raw_key_once_and_stores_its_hash(mdw, committed_db):
    result = mdw(
        "create", "nightly-etl", "--scope", "read", "--cidr", "10.0.0.0/8", "--rate-limit", "60"
    )

    assert result.exit_code == 0
    (raw_key,) = KEY_PATTERN.findall(result.output)
    assert tokens.is_well_formed(raw_key)
    assert "shown once" in result.output
    assert "10.0.0.0/8" in result.output
    assert "60/min" in result.output
    assert stored_hashes(committed_db) == [tokens.hash_key(raw_key)]


def test_list_show_and_audit_never_print_a_key(mdw):
    created = mdw("create", "ops", "--scope", "read", "--scope", "admin", "--json")
    body = json.loads(created.output)

    listed = mdw("list")
    shown = mdw("show", str(body["id"]))
    audited = mdw("audit", str(body["id"]))
    listed_json = json.loads(mdw("list", "--json").output)

    assert body["scopes"] == ["read", "admin"]
    for result in (listed, shown, audited):
        assert result.exit_code == 0
        assert KEY_PATTERN.search(result.output) is None
    assert "ops" in listed.output
    assert "1 key(s)" in listed.output
    assert f"prefix:        {body['key_prefix']}" in shown.output
    assert "created" in audited.output
    assert "by cli " in audited.output
    assert [key["name"] for key in listed_json] == ["ops"]
    assert "api_key" not in listed_json[0]


def test_revoke_restore_rotate_and_delete(mdw):
    key_id = str(json.loads(mdw("create", "cycle", "--scope", "read", "--json").output)["id"])

    revoked = mdw("revoke", key_id)
    restored = mdw("restore", key_id)
    rotated = mdw("rotate", key_id, "--grace-seconds", "30")
    refused_delete = mdw("delete", key_id, input="n\n")
    deleted = mdw("delete", key_id, "--yes")
    history = mdw("audit", key_id, "--json")

    assert "is revoked; servers refuse it within" in revoked.output
    assert restored.output.strip().endswith("is active")
    assert len(KEY_PATTERN.findall(rotated.output)) == 1
    assert "previous key:" in rotated.output
    assert refused_delete.exit_code == 1
    assert deleted.exit_code == 0
    assert "audit history is kept" in deleted.output
    events = [row["event"] for row in json.loads(history.output)["items"]]
    assert events == ["deleted", "rotated", "restored", "revoked", "created"]


@pytest.mark.parametrize(
    "command",
    [("revoke",), ("restore",), ("rotate",), ("delete", "--yes")],
)
def test_every_change_from_the_cli_empties_this_processs_status_cache(
    mdw, committed_db, set_env, command
):
    set_env(AUTH_CACHE_TTL_SECONDS="60")
    key_id = json.loads(mdw("create", "cached", "--scope", "read", "--json").output)["id"]
    if command[0] == "restore":
        assert mdw("revoke", str(key_id)).exit_code == 0
    with psycopg.connect(committed_db, autocommit=True) as conn:
        before = access.load_status(conn, key_id)  # remembered, as a request would
    assert access.cached_status(key_id) == (True, before)

    result = mdw(command[0], str(key_id), *command[1:])

    assert result.exit_code == 0, result.output
    assert access.cached_status(key_id) == (False, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--scope", "read", "--expires-at", "2001-01-01T00:00:00Z"], "future"),
        (["create", "x", "--scope", "read", "--cidr", "300.0.0.0/8"], "is not a CIDR"),
        (["create", "x", "--scope", "read", "--rate-limit", "0"], ">= 1"),
        (["create", "", "--scope", "read"], "length >= 1"),
        (["show", "987654"], "no API key with id 987654"),
        (["revoke", "987654"], "no API key with id 987654"),
        (["audit", "987654"], "no API key with id 987654"),
        (["audit", "1", "--cursor", "forged"], "cursor is not valid"),
    ],
)
def test_domain_errors_are_one_line_messages(mdw, committed_db, args, message):
    result = mdw(*args)

    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
    assert stored_hashes(committed_db) == []


def test_a_duplicate_name_is_refused(mdw):
    mdw("create", "twin", "--scope", "read")

    result = mdw("create", "twin", "--scope", "admin")

    assert result.exit_code == 1
    assert "Error: an API key named 'twin' already exists" in result.output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/api/v1/symbols", "/api/v1/symbols"),
        ("/x/\x1b[2J", "/x/\\x1b[2J"),
        ("/x/\u009b31m\x7f", "/x/\\x9b31m\\x7f"),
        ("/x/\u202eevil\u2028", "/x/\\u202eevil\\u2028"),
        ("/x/\U000e0041", "/x/\\U000e0041"),
        ("/x/\\x1b", "/x/\\\\x1b"),  # a literal backslash never passes for an escape
        ("/x/Zürich €", "/x/Zürich €"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on_and_nothing_else(text, shown):
    from chalicelib.keys.cli import printable

    assert printable(text) == shown
