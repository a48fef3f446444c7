"""`mdw keys …`: manage API keys straight on the database, for operators and for recovery
(no admin key needed: whoever can reach the database is already trusted).

The raw key is printed once, by `create` and `rotate`. Running servers notice a revocation,
restore or rotation within `AUTH_CACHE_TTL_SECONDS`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import msgspec

from chalicelib import db
from chalicelib.cli_options import errors_as_messages, validated_options
from chalicelib.config import get_settings
from chalicelib.keys import service
from chalicelib.keys.access import utc_now
from chalicelib.keys.models import (
    AUDIT_EVENTS,
    MAX_AUDIT_PAGE,
    SCOPES,
    Actor,
    AuditPageOut,
    AuditQuery,
    CreatedKeyOut,
    CreateKeyRequest,
    KeyOut,
    RotateKeyRequest,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

NEVER = "never"


def _actor() -> Actor:
    from chalicelib.migrations import default_applied_by

    return Actor(who=f"cli {default_applied_by()}")


# Body fields whose option is not simply `--field-name`.
_OPTION_NAMES = {
    "name": "NAME",
    "scopes": "--scope",
    "allowed_cidrs": "--cidr",
    "rate_limit_per_minute": "--rate-limit",
}
# Fields the services name in their messages, as the CLI's options.
_FIELD_OPTIONS = {
    "expires_at": "--expires-at",
    "allowed_cidrs": "--cidr",
    "rate_limit_per_minute": "--rate-limit",
    "grace_seconds": "--grace-seconds",
}
_errors_as_messages = errors_as_messages(_FIELD_OPTIONS)


def _validated(data: dict[str, Any], model: type[T]) -> T:
    """Options checked by the same model that checks the HTTP body; errors name the option."""
    return validated_options(data, model, options=_OPTION_NAMES)


def _time(value: str | None, *, option: str) -> datetime | None:
    if value is None:
        return None
    return validated_options({"since": value}, AuditQuery, options={"since": option}).since


# Characters a terminal may act on rather than show: C0/C1 controls and DEL (Cc), invisible
# format characters such as bidi overrides (Cf), and line/paragraph separators. JSON already
# escapes C0 but leaves the others raw.
_UNPRINTABLE = frozenset(("Cc", "Cf", "Zl", "Zp"))


def _escaped_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """Text from a request (a path, a reason) as it may be printed: every control or format
    character, and the backslash, written as a Python-style escape; everything else as is."""
    return "".join(
        "\\\\"
        if char == "\\"
        else _escaped_char(char)
        if unicodedata.category(char) in _UNPRINTABLE
        else char
        for char in text
    )


def _utf16_escape(char: str) -> str:
    units = char.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def _json_escaped(text: str) -> str:
    # What JSON left raw (only ever inside strings) becomes its own \u escape, as UTF-16.
    return "".join(
        _utf16_escape(char) if char != "\n" and unicodedata.category(char) in _UNPRINTABLE else char
        for char in text
    )


def _print_json(value: Any) -> None:
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    click.echo(_json_escaped(text))


def _when(value: datetime | None, empty: str = "-") -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S%z") if value else empty


def _print_key(key: KeyOut) -> None:
    rows = [
        ("id", str(key.id)),
        ("name", key.name),
        ("prefix", key.key_prefix),
        ("status", key.status),
        ("scopes", ",".join(key.scopes)),
        ("expires at", _when(key.expires_at, NEVER)),
        ("allowed cidrs", ", ".join(key.allowed_cidrs) or "any"),
        ("rate limit", f"{key.rate_limit_per_minute}/min" if key.rate_limit_per_minute else "-"),
        ("created at", _when(key.created_at)),
        ("last used at", _when(key.last_used_at)),
        ("requests", f"{key.request_count:,}"),
    ]
    if key.previous_key_prefix:
        rows.append(
            (
                "previous key",
                f"{key.previous_key_prefix} until {_when(key.previous_key_expires_at)}",
            )
        )
    for label, value in rows:
        click.echo(f"{label + ':':15}{value}")


def _print_created(created: CreatedKeyOut, action: str) -> None:
    _print_key(created)
    click.echo(f"\nAPI key {action}; shown once, store it now:")
    click.echo(f"  {created.api_key}")


@click.group("keys")
def keys_group() -> None:
    """API keys: create, list, show, revoke, restore, delete, rotate, audit."""


@keys_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="read and/or admin (repeat the option for both).",
)
@click.option("--expires-at", help="ISO 8601 time with a zone, e.g. 2030-01-01T00:00:00Z.")
@click.option("--cidr", "cidrs", multiple=True, help="Allowed source network (repeatable).")
@click.option("--rate-limit", type=int, help="Requests per minute (default: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@_errors_as_messages
def create_command(
    name: str,
    scopes: tuple[str, ...],
    expires_at: str | None,
    cidrs: tuple[str, ...],
    rate_limit: int | None,
    as_json: bool,
) -> None:
    """Create a key and print its raw value (once)."""
    request = _validated(
        {
            "name": name,
            "scopes": list(scopes),
            "expires_at": expires_at,
            "allowed_cidrs": list(cidrs),
            "rate_limit_per_minute": rate_limit,
        },
        CreateKeyRequest,
    )
    with db.command_session() as conn, conn.transaction():
        created = service.create_key(
            conn,
            name=request.name,
            scopes=list(request.scopes),
            expires_at=request.expires_at,
            allowed_cidrs=request.allowed_cidrs,
            rate_limit_per_minute=request.rate_limit_per_minute,
            actor=_actor(),
        )
    body = CreatedKeyOut.from_created(created, utc_now())
    if as_json:
        _print_json(body)
    else:
        _print_created(body, "created")


@keys_group.command("list")
@click.option("--active-only", is_flag=True, help="Only keys that would authenticate now.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@_errors_as_messages
def list_command(active_only: bool, as_json: bool) -> None:
    """List keys (no hashes, no raw keys)."""
    with db.command_session() as conn, conn.transaction():
        keys = service.list_keys(conn, active_only=active_only)
    now = utc_now()
    shown = [KeyOut.from_key(key, now) for key in keys]
    if as_json:
        _print_json(shown)
        return
    click.echo(f"{'id':>5}  {'name':30} {'prefix':12}  {'status':8} {'scopes':10} {'requests':>9}")
    for key in shown:
        click.echo(
            f"{key.id:>5}  {key.name[:30]:30} {key.key_prefix:12}  {key.status:8} "
            f"{','.join(key.scopes):10} {key.request_count:>9,}"
        )
    click.echo(f"{len(shown)} key(s)")


@keys_group.command("show")
@click.argument("key_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@_errors_as_messages
def show_command(key_id: int, as_json: bool) -> None:
    """Show one key with its usage."""
    with db.command_session() as conn, conn.transaction():
        key = KeyOut.from_key(service.get_key(conn, key_id), utc_now())
    if as_json:
        _print_json(key)
    else:
        _print_key(key)


@keys_group.command("revoke")
@click.argument("key_id", type=click.IntRange(min=1))
@_errors_as_messages
def revoke_command(key_id: int) -> None:
    """Revoke a key (restore undoes it)."""
    with db.command_session() as conn, conn.transaction():
        key = service.revoke_key(conn, key_id, actor=_actor())
    ttl = get_settings().auth_cache_ttl_seconds
    click.echo(f"key {key.id} ({key.name}) is revoked; servers refuse it within {ttl}s")


@keys_group.command("restore")
@click.argument("key_id", type=click.IntRange(min=1))
@click.option("--expires-at", help=f"Also set a new expiry (ISO 8601 with a zone, or '{NEVER}').")
@_errors_as_messages
def restore_command(key_id: int, expires_at: str | None) -> None:
    """Restore a revoked key (an expired one needs a later --expires-at)."""
    with db.command_session() as conn, conn.transaction():
        if expires_at is None:
            key = service.restore_key(conn, key_id, actor=_actor())
        else:
            new_expiry = None if expires_at == NEVER else _time(expires_at, option="--expires-at")
            key = service.restore_key(conn, key_id, expires_at=new_expiry, actor=_actor())
    click.echo(f"key {key.id} ({key.name}) is {key.state(utc_now())}")


@keys_group.command("delete")
@click.argument("key_id", type=click.IntRange(min=1))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_errors_as_messages
def delete_command(key_id: int, yes: bool) -> None:
    """Delete a key for good (its audit history stays)."""
    if not yes:
        click.confirm(f"Delete API key {key_id} permanently?", abort=True)
    with db.command_session() as conn, conn.transaction():
        service.delete_key(conn, key_id, actor=_actor())
    click.echo(f"key {key_id} deleted; its audit history is kept")


@keys_group.command("rotate")
@click.argument("key_id", type=click.IntRange(min=1))
@click.option(
    "--grace-seconds",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How long the old key keeps working (never past the key's expiry).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@_errors_as_messages
def rotate_command(key_id: int, grace_seconds: int, as_json: bool) -> None:
    """Give a key a new raw value and print it (once)."""
    options = _validated({"grace_seconds": grace_seconds}, RotateKeyRequest)
    with db.command_session() as conn, conn.transaction():
        created = service.rotate_key(
            conn, key_id, grace_seconds=options.grace_seconds, actor=_actor()
        )
    body = CreatedKeyOut.from_created(created, utc_now())
    if as_json:
        _print_json(body)
    else:
        _print_created(body, "rotated")


@keys_group.command("audit")
@click.argument("key_id", type=click.IntRange(min=1))
@click.option("--since", help="From this time (inclusive; ISO 8601 with a zone).")
@click.option("--until", help="Up to this time (exclusive).")
@click.option("--status", type=int, help="Only this HTTP status.")
@click.option("--route", help="Only this route pattern, e.g. /api/v1/symbols.")
@click.option("--event", type=click.Choice(AUDIT_EVENTS), help="Only this event.")
@click.option("--limit", type=click.IntRange(1, MAX_AUDIT_PAGE), default=50, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next cursor.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@_errors_as_messages
def audit_command(
    key_id: int,
    since: str | None,
    until: str | None,
    status: int | None,
    route: str | None,
    event: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """A key's audit log, newest first (also for deleted keys)."""
    query = _validated(
        {
            "since": since,
            "until": until,
            "status": status,
            "route": route,
            "event": event,
            "limit": limit,
            "cursor": cursor,
        },
        AuditQuery,
    )
    with db.command_session() as conn, conn.transaction():
        page = service.audit_page(conn, key_id, query)
    if as_json:
        _print_json(AuditPageOut(key_id=key_id, items=page.items, next_cursor=page.next_cursor))
        return
    for row in page.items:
        what = printable(f"{row.method} {row.path}") if row.method else ""
        status_text = str(row.status_code) if row.status_code is not None else ""
        latency = f"{row.latency_ms}ms" if row.latency_ms is not None else ""
        click.echo(
            f"{row.id:>8}  {_when(row.occurred_at)}  {row.event:11} {status_text:3} "
            f"{latency:>6}  {row.source_ip or '-':15} {what}"
            + (f"  ({printable(row.reason)})" if row.reason else "")
        )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")
