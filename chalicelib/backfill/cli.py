"""`mdw backfill`: run the backfill from a shell, with a progress line and a summary table.

The command runs the same `run_units` the scheduled worker runs. A domain error (an unknown
symbol, no Polygon key) is a one-line message; a symbol that fails is reported in the table
and makes the exit status 1, after every other symbol has had its turn.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, TextIO

import click

from chalicelib.errors import AppError
from chalicelib.market.timeframes import TIMEFRAMES

if TYPE_CHECKING:
    from chalicelib.backfill.models import BackfillResult, BackfillUnit
    from chalicelib.backfill.sources import BarSource
    from chalicelib.db import ConnectionSource

_ERROR_WIDTH = 60


class ProgressLine:
    """One status line on a terminal, rewritten in place as units finish (one line per unit
    when the stream is not a terminal, so logs stay readable): units done of total, bars
    written, and the rate since the start."""

    def __init__(self, total: int, *, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.failed = 0
        self.bars_written = 0
        self.started = time.monotonic()
        self._interactive = stream.isatty()
        self._width = 0

    def update(self, result: BackfillResult) -> None:
        self.done += 1
        self.bars_written += result.bars_written
        self.failed += result.status == "failed"
        elapsed = max(time.monotonic() - self.started, 1e-9)
        failed = f", {self.failed} failed" if self.failed else ""
        line = (
            f"backfill [{self.done}/{self.total}{failed}] {self.bars_written:,} bars written, "
            f"{self.bars_written / elapsed:,.0f} bars/s - {result.symbol} {result.timeframe} "
            f"{result.status}"
        )
        if self._interactive:
            padding = " " * max(0, self._width - len(line))
            self.stream.write(f"\r{line}{padding}")
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()


def backfill_with_progress(
    units: Sequence[BackfillUnit],
    *,
    client: BarSource,
    source: ConnectionSource | None = None,
    since: date | None = None,
    full: bool = False,
    stream: TextIO | None = None,
) -> list[BackfillResult]:
    """Run `units`, showing progress on `stream` (stderr by default)."""
    from chalicelib.backfill.service import run_units

    progress = ProgressLine(len(units), stream=stream or sys.stderr)
    try:
        return run_units(
            units,
            source=source,
            client=client,
            since=since,
            full=full,
            on_progress=progress.update,
        )
    finally:
        progress.close()


def summary_lines(results: Sequence[BackfillResult]) -> list[str]:
    """A table of the results, one row per (symbol, timeframe), and a totals line."""
    header = ("symbol", "tf", "status", "fetched", "written", "requests", "seconds", "error")
    rows = [
        (
            result.symbol,
            result.timeframe,
            result.status,
            f"{result.bars_fetched:,}",
            f"{result.bars_written:,}",
            str(result.provider_requests),
            f"{result.seconds:.1f}",
            _shorten(result.error or ""),
        )
        for result in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right_aligned = {3, 4, 5, 6}

    def render(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right_aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    failed = sum(result.status == "failed" for result in results)
    written = sum(result.bars_written for result in results)
    seconds = sum(result.seconds for result in results)
    totals = (
        f"{len(results)} backfilled: {len(results) - failed} completed, {failed} failed; "
        f"{written:,} bars written in {seconds:.1f} s"
    )
    return [render(header), *(render(row) for row in rows), totals]


def _shorten(text: str) -> str:
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 1] + "…"


@click.command("backfill")
@click.option(
    "--symbol",
    "-s",
    "symbols",
    multiple=True,
    help="A tracked symbol (repeat for more; default: every active symbol).",
)
@click.option(
    "--timeframe",
    "-t",
    type=click.Choice(list(TIMEFRAMES)),
    help="Only this bar size (default: each timeframe a symbol tracks).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Fetch from this date (YYYY-MM-DD) instead of the newest stored bar.",
)
@click.option(
    "--full", is_flag=True, help="Fetch each unit's whole history again, from its default depth."
)
def backfill_command(
    symbols: tuple[str, ...], timeframe: str | None, since: datetime | None, full: bool
) -> None:
    """Fetch, validate and store bars from Polygon for tracked symbols.

    Each (symbol, timeframe) continues from its newest stored bar; a new one starts at its
    default depth. Exits with status 1 if any symbol failed.
    """
    from chalicelib import db
    from chalicelib.backfill.service import plan_units
    from chalicelib.config import get_settings
    from chalicelib.polygon import PolygonClient

    try:
        source = db.get_database()
        with source.connection() as conn:
            units = plan_units(conn, symbols=list(symbols) or None, timeframe=timeframe)
        if not units:
            scope = f"tracks the {timeframe} timeframe" if timeframe else "is tracked"
            click.echo(f"nothing to backfill: no active symbol {scope}")
            return
        with PolygonClient.from_settings(get_settings()) as client:
            results = backfill_with_progress(
                units,
                client=client,
                source=source,
                since=since.date() if since else None,
                full=full,
            )
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    for line in summary_lines(results):
        click.echo(line)
    if any(result.status == "failed" for result in results):
        raise SystemExit(1)
