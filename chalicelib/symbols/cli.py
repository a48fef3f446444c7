"""`mdw symbols …`: manage tracked symbols straight on the database, with the same services (and
the same checks) as the admin endpoints. Beside `make run` no setting is needed: the database
is the embedded one and the provider is the simulator `make run` started."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec

from chalicelib import db
from chalicelib.cli_options import errors_as_messages, validated_options
from chalicelib.market.tickers import ASSET_CLASSES
from chalicelib.market.timeframes import TIMEFRAMES
from chalicelib.symbols import service
from chalicelib.symbols.models import (
    AddSymbolRequest,
    SymbolDetail,
    SymbolOut,
    UpdateSymbolRequest,
)

F = TypeVar("F", bound=Callable[..., Any])

_errors_as_messages = errors_as_messages()


def _line(symbol: SymbolOut) -> str:
    state = "active" if symbol.active else "inactive"
    last = f"{symbol.last_backfill:%Y-%m-%d %H:%M}Z" if symbol.last_backfill else "never"
    return (
        f"{symbol.symbol:<10} {symbol.asset_class:<6} {','.join(symbol.timeframes):<16} "
        f"{state:<8} {symbol.backfill_status:<11} last backfill {last}"
    )


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(msgspec.to_builtins(value), indent=2))


def _echo_symbol(symbol: SymbolOut, *, as_json: bool, verb: str = "") -> None:
    """One symbol as JSON, or as its line (after `verb`, e.g. "added")."""
    if as_json:
        _echo_json(symbol)
    else:
        click.echo(f"{verb} {_line(symbol)}" if verb else _line(symbol))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API does.")


@click.group("symbols")
def symbols_group() -> None:
    """Tracked symbols: list, add, show, update, remove, backfill."""


@symbols_group.command("list")
@click.option("--inactive", is_flag=True, help="Also list deactivated symbols.")
@click.option("--asset-class", type=click.Choice(ASSET_CLASSES), help="Only this asset class.")
@json_option
@_errors_as_messages
def list_command(inactive: bool, asset_class: str | None, as_json: bool) -> None:
    """List tracked symbols (active ones unless --inactive)."""
    with db.connection() as conn:
        symbols = service.list_symbols(
            conn, active=None if inactive else True, asset_class=asset_class
        )
    if as_json:
        _echo_json(symbols)
        return
    for symbol in symbols:
        click.echo(_line(symbol))
    click.echo(f"{len(symbols)} symbol{'s' if len(symbols) != 1 else ''}")


@symbols_group.command("add")
@click.argument("symbol")
@click.option(
    "--asset-class", required=True, type=click.Choice(ASSET_CLASSES), help="What SYMBOL is."
)
@click.option(
    "--timeframe",
    "-t",
    "timeframes",
    multiple=True,
    type=click.Choice(list(TIMEFRAMES)),
    help="A bar size to track (repeat for more; default 1d).",
)
@json_option
@_errors_as_messages
def add_command(symbol: str, asset_class: str, timeframes: tuple[str, ...], as_json: bool) -> None:
    """Start tracking SYMBOL (checked against the provider); the scheduler of `make run` (or
    `mdw symbols backfill SYMBOL`) fetches its history."""
    data: dict[str, Any] = {"symbol": symbol, "asset_class": asset_class}
    if timeframes:
        data["timeframes"] = list(timeframes)
    request = validated_options(data, AddSymbolRequest, options={"symbol": "SYMBOL"})
    row = service.add_symbol(request)
    added = SymbolOut.from_row(row)
    _echo_symbol(added, as_json=as_json, verb="added")


@symbols_group.command("show")
@click.argument("symbol")
@json_option
@_errors_as_messages
def show_command(symbol: str, as_json: bool) -> None:
    """A tracked symbol with its bars per timeframe: count, range, validation rate, gaps."""
    with db.connection() as conn:
        detail: SymbolDetail = service.get_symbol_detail(conn, symbol)
    _echo_symbol(detail, as_json=as_json)
    if as_json:
        return
    if detail.last_error:
        click.echo(f"  last error: {detail.last_error}")
    for timeframe, stats in detail.stats.items():
        first, last = stats.date_range.first, stats.date_range.last
        span = f"{first:%Y-%m-%d} .. {last:%Y-%m-%d}" if first and last else "no bars"
        rate = f"{stats.validation_rate:.2%}" if stats.validation_rate is not None else "-"
        gaps = f", {stats.gaps_detected} gaps" if stats.gaps_detected is not None else ""
        click.echo(
            f"  {timeframe:<4} {stats.record_count:>8,} bars  {span}  validated {rate}{gaps}"
        )


@symbols_group.command("update")
@click.argument("symbol")
@click.option("--asset-class", type=click.Choice(ASSET_CLASSES), help="Correct the asset class.")
@click.option(
    "--timeframe",
    "-t",
    "timeframes",
    multiple=True,
    type=click.Choice(list(TIMEFRAMES)),
    help="Track exactly these bar sizes (repeat for more).",
)
@click.option("--activate", "active", flag_value=True, default=None, help="Track it again.")
@click.option("--deactivate", "active", flag_value=False, help="Stop tracking; bars are kept.")
@json_option
@_errors_as_messages
def update_command(
    symbol: str,
    asset_class: str | None,
    timeframes: tuple[str, ...],
    active: bool | None,
    as_json: bool,
) -> None:
    """Change a tracked symbol; options left out keep their value."""
    data: dict[str, Any] = {}
    if asset_class is not None:
        data["asset_class"] = asset_class
    if timeframes:
        data["timeframes"] = list(timeframes)
    if active is not None:
        data["active"] = active
    if not data:
        raise click.UsageError("nothing to change: give --asset-class, --timeframe, --activate")
    request = validated_options(data, UpdateSymbolRequest)
    with db.connection() as conn, conn.transaction():
        updated = service.update_symbol(conn, symbol, request)
    _echo_symbol(updated, as_json=as_json, verb="updated")


@symbols_group.command("remove")
@click.argument("symbol")
@_errors_as_messages
def remove_command(symbol: str) -> None:
    """Stop tracking SYMBOL (its bars are kept; `update --activate` tracks it again)."""
    with db.connection() as conn, conn.transaction():
        removed = service.deactivate_symbol(conn, symbol)
    click.echo(f"deactivated {removed.symbol}; its bars are kept")


@symbols_group.command("backfill")
@click.argument("symbol")
@_errors_as_messages
def backfill_command(symbol: str) -> None:
    """Backfill SYMBOL now, every timeframe it tracks. Exits 1 if a timeframe failed."""
    from chalicelib.backfill.cli import summary_lines

    outcome = service.backfill_symbol(symbol)
    results = list(outcome.results or [])
    for line in summary_lines(results):
        click.echo(line)
    if any(result.status == "failed" for result in results):
        raise SystemExit(1)
