"""`mdw`: the operators' command line. Domain errors become one-line messages and a non-zero
exit, never a traceback."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from chalicelib import db, jobs
from chalicelib.backfill.cli import backfill_command
from chalicelib.config import get_settings
from chalicelib.errors import AppError
from chalicelib.keys.cli import keys_group
from chalicelib.local_state import read_live_state
from chalicelib.symbols.cli import symbols_group

F = TypeVar("F", bound=Callable[..., Any])


def domain_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AppError as exc:
            message = exc.message
            statement = exc.details.get("statement") if isinstance(exc.details, dict) else None
            if statement:
                message += f"\n  statement: {statement}"
            raise click.ClickException(message) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mdw: Market Data Warehouse operations.

    With no settings, the commands use the embedded database under the data directory and,
    while `make run` runs, the Polygon simulator it started.
    """
    use_local_server_defaults()


def use_local_server_defaults() -> None:
    """When no provider is configured and `make run` is serving from this data directory with
    its own simulator, point the provider settings at that simulator (a real POLYGON_API_KEY
    or POLYGON_BASE_URL always wins)."""
    try:
        settings = get_settings()
    except AppError:
        return  # a bad setting: the command reports it in its own one line
    if settings.polygon_api_key or settings.polygon_api_key_secret_arn:
        return
    if os.environ.get("POLYGON_BASE_URL", "").strip():
        return
    state = read_live_state(settings.data_dir)
    if state is None or not (state.polygon_base_url and state.polygon_api_key):
        return
    os.environ["POLYGON_BASE_URL"] = state.polygon_base_url
    os.environ["POLYGON_API_KEY"] = state.polygon_api_key
    get_settings.cache_clear()


main.add_command(backfill_command)
main.add_command(keys_group)
main.add_command(symbols_group)


@main.group("db")
def db_group() -> None:
    """Schema migrations."""


@db_group.command("migrate")
@click.option("--dry-run", is_flag=True, help="List pending migrations without applying them.")
@domain_errors
def db_migrate(dry_run: bool) -> None:
    """Apply pending migrations (exactly once, safe to run concurrently)."""
    summary = jobs.migrate(dry_run=dry_run)
    if dry_run:
        click.echo(f"pending: {len(summary.pending_before)}")
        for name in summary.pending_before:
            click.echo(f"  {name}")
        return
    for name in summary.applied:
        click.echo(f"applied {name}")
    click.echo(
        f"{len(summary.applied)} applied in {summary.duration_ms} ms; "
        f"schema {'verified' if summary.schema_ok else 'NOT verified'}"
    )


@db_group.command("status")
@domain_errors
def db_status() -> None:
    """Show applied and pending migrations."""
    from chalicelib.migrations import get_migration_history, pending_migrations

    with db.command_session() as conn:
        history = get_migration_history(conn)
        pending = pending_migrations(conn)
    for applied in history:
        click.echo(
            f"applied  {applied.version:04d}_{applied.name}.sql  "
            f"{applied.applied_at:%Y-%m-%d %H:%M:%S%z}  {applied.applied_by}  "
            f"{applied.duration_ms} ms"
        )
    for migration in pending:
        click.echo(f"pending  {migration.filename}")
    click.echo(f"{len(history)} applied, {len(pending)} pending")


@db_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON.")
@domain_errors
def db_verify(as_json: bool) -> None:
    """Check that every table, column and index the code expects exists."""
    from chalicelib.schema import verify_schema

    with db.command_session() as conn:
        report = verify_schema(conn)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        click.echo(f"schema ok ({len(report.checks)} checks)")
    for name in report.missing:
        click.echo(f"missing {name}", err=True)
    if not report.ok:
        raise SystemExit(1)


@main.command("bootstrap")
@click.option("--new-admin-key", is_flag=True, help="Create another admin key even if one exists.")
@domain_errors
def bootstrap_command(new_admin_key: bool) -> None:
    """Migrate, verify, create the first admin key and seed the core symbols."""
    from chalicelib.bootstrap import bootstrap

    with db.command_session() as conn:
        summary = bootstrap(
            conn, new_admin_key=new_admin_key, migration_options=jobs.migration_options()
        )
    click.echo(f"migrations applied: {len(summary.migrations_applied)}")
    click.echo(f"schema verified: {'yes' if summary.schema_ok else 'no'}")
    if summary.admin_key:
        click.echo(f"admin key created ({summary.admin_key_name}); shown once, store it now:")
        click.echo(f"  {summary.admin_key}")
    else:
        click.echo("admin key: an active admin key exists (use --new-admin-key for another)")
    click.echo(f"symbols seeded: {summary.symbols_seeded}")
    if not summary.changed:
        click.echo("nothing to do: already bootstrapped")


if __name__ == "__main__":
    main()
