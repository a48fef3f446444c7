"""Backfill orchestration: for each (symbol, timeframe), fetch bars from a `BarSource`, validate
them and upsert them, recording the run and the unit's status.

Each (symbol, timeframe) is its own unit: its own transactions and its own failure, so one bad
ticker never stops the others. A unit fetches and validates everything before it writes, and
writes all its bars with its success in one transaction, so a failed run leaves no bar behind;
the run's history row is committed on its own, so a failure is still recorded. Re-running is
idempotent: the same bars upsert to the same rows, and unchanged rows are not rewritten.

Bars are fetched and stored as traded (`adjusted=false`); reads apply the splits (the
`adjusted_bars` view, migration 0009). Every split a unit learns from the provider is stored in
`splits` with its bars, in the same transaction; a split seen again changes nothing. A split
therefore rewrites no stored bar and needs no re-fetch. Validation judges bars in split-adjusted
terms, so a split is not a price jump and post-split volumes are not spikes.

Where a unit starts: from the newest stored bar, which is fetched again because it may have
been partial; for a unit with no bars, from a default depth per timeframe; for a unit whose
bars are still the split-adjusted ones stored before migration 0009, from the beginning, so it
holds traded prices only. Where it ends: today, or the date a queued message names.

The entry points: `run_backfill` (the CLI and the API), `plan_units` and `run_units` (the CLI's
progress and `make run`), `backfill_symbol_through` and `backfill_grouped_day` (the SQS worker's
two kinds of message), and `backfill_one`, the unit itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING

from chalicelib import db
from chalicelib.backfill import repository
from chalicelib.backfill.models import (
    BackfillResult,
    BackfillState,
    BackfillUnit,
    BarExtent,
    RecentBar,
    RunOutcome,
    SymbolRef,
    TrackedSymbol,
)
from chalicelib.backfill.sources import BarSource, GroupedDaySource, StoredBarSource
from chalicelib.backfill.splits import SplitFactors
from chalicelib.backfill.validation import PriorBars, Thresholds, is_validated, validate_bars
from chalicelib.config import Settings, get_settings
from chalicelib.db import ConnectionSource
from chalicelib.errors import BadRequest, Conflict, NotFound, describe_error
from chalicelib.market.calendar import SESSION_ASSET_CLASSES, market_date
from chalicelib.market.tickers import MARKET_ASSET_CLASSES, Market, normalize_symbol
from chalicelib.market.tickers import provider_ticker as _provider_ticker
from chalicelib.market.timeframes import DAILY, DAILY_OR_LONGER, TIMEFRAMES, derived_from

if TYPE_CHECKING:
    from chalicelib.polygon import PolygonBar, PolygonClient, Split

log = logging.getLogger(__name__)

ProgressCallback = Callable[[BackfillResult], None]

INTERRUPTED = "interrupted before it finished"


# ----------------------------------------------------------------------------------------------
# Which units may run: the one rule


class UnknownSymbol(NotFound):
    """A symbol named for a backfill is not tracked."""


class InactiveSymbol(Conflict):
    """A symbol named for a backfill is deactivated."""


class UntrackedTimeframe(BadRequest):
    """A symbol named for a backfill does not track the timeframe asked for."""


NOT_BACKFILLABLE = (UnknownSymbol, InactiveSymbol, UntrackedTimeframe)
"""What naming a unit that may not run raises: the worker rejects such a message for good."""


def _why_not_backfillable(row: TrackedSymbol, timeframe: str | None) -> str | None:
    """Why a tracked symbol may not be backfilled (in `timeframe`, when given); None if it may.
    The CLI and the API refuse such a symbol; a grouped message skips it."""
    if not row.active:
        return "inactive"
    if timeframe is not None and timeframe not in row.timeframes:
        return "timeframe"
    return None


def _backfillable(
    conn: db.Connection, symbols: Sequence[str], timeframe: str | None
) -> list[TrackedSymbol]:
    """The named symbols' rows, in the order named; raises for the first rule a name breaks."""
    found = {row.symbol: row for row in repository.get_symbols(conn, symbols)}
    missing = [symbol for symbol in symbols if symbol not in found]
    if missing:
        raise UnknownSymbol(f"not a tracked symbol: {', '.join(missing)}")
    reasons = {symbol: _why_not_backfillable(found[symbol], timeframe) for symbol in symbols}
    inactive = [symbol for symbol in symbols if reasons[symbol] == "inactive"]
    if inactive:
        raise InactiveSymbol(
            f"symbol is deactivated: {', '.join(inactive)}; reactivate it to backfill it"
        )
    lacking = [symbol for symbol in symbols if reasons[symbol] == "timeframe"]
    if lacking:
        raise UntrackedTimeframe(f"{', '.join(lacking)} does not track the {timeframe} timeframe")
    return [found[symbol] for symbol in symbols]


# ----------------------------------------------------------------------------------------------
# Entry points


def run_backfill(
    *,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    since: date | None = None,
    full: bool = False,
    client: BarSource | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[BackfillResult]:
    """Backfill the named symbols (None: every active tracked symbol), each timeframe they track
    or only `timeframe`; one result per (symbol, timeframe), in order.

    Raises a domain error before anything runs if a named symbol is not tracked or inactive, or
    the timeframe is unknown; a unit's own failure is reported in its result instead.
    """
    source = db.get_database()
    with source.connection() as conn:
        units = plan_units(conn, symbols=symbols, timeframe=timeframe)
    return run_units(
        units, source=source, client=client, since=since, full=full, on_progress=on_progress
    )


def plan_units(
    conn: db.Connection,
    *,
    symbols: Sequence[str] | None = None,
    timeframe: str | None = None,
    fresh_since: datetime | None = None,
) -> list[BackfillUnit]:
    """The (symbol, timeframe) units a backfill would run, by symbol then bar size.

    `fresh_since` leaves out units whose last successful backfill is at least that recent
    (`make run` uses it so a second start fetches only what is missing).
    """
    if timeframe is not None and timeframe not in TIMEFRAMES:
        raise BadRequest(
            f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
        )
    if symbols is None:
        rows = repository.list_active_symbols(conn)
    else:
        wanted = list(dict.fromkeys(normalize_symbol(raw)[0] for raw in symbols))
        rows = _backfillable(conn, wanted, timeframe)

    fresh: set[tuple[str, str]] = set()
    if fresh_since is not None:
        fresh = {
            (state.symbol, state.timeframe)
            for state in repository.list_states(conn, [row.symbol for row in rows])
            if state.status == "completed"
            and state.last_backfill is not None
            and state.last_backfill >= fresh_since
        }
    # Smallest first, so a timeframe built from a finer one runs after it.
    order = list(TIMEFRAMES)
    return [
        BackfillUnit(row.symbol, row.asset_class, name, derived_from(name, row.timeframes))
        for row in rows
        for name in sorted(row.timeframes, key=order.index)
        if (timeframe is None or name == timeframe) and (row.symbol, name) not in fresh
    ]


def run_units(
    units: Sequence[BackfillUnit],
    *,
    source: ConnectionSource | None = None,
    client: BarSource | None = None,
    since: date | None = None,
    full: bool = False,
    until: date | None = None,
    full_client: BarSource | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[BackfillResult]:
    """Run `units` one after the other; `on_progress` hears about each as it finishes."""
    if client is None:
        from chalicelib.polygon import PolygonClient

        client = PolygonClient.from_settings(get_settings())
    source = source or db.get_database()
    results = []
    for unit in units:
        result = backfill_one(
            source,
            _source_of(unit, client, source),
            unit,
            unit.timeframe,
            since=since,
            full=full,
            until=until,
            full_client=full_client,
        )
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    return results


def backfill_symbol_through(
    symbol: str, timeframe: str, *, until: date, client: BarSource
) -> BackfillResult:
    """Bring one tracked (symbol, timeframe) up to market date `until` with range requests.

    Raises one of NOT_BACKFILLABLE when the unit may not run (unknown, inactive, or not
    tracking the timeframe): retrying cannot change that.
    """
    source = db.get_database()
    with source.connection() as conn:
        (unit,) = plan_units(conn, symbols=[symbol], timeframe=timeframe)
    return backfill_one(source, _source_of(unit, client, source), unit, unit.timeframe, until=until)


def _source_of(unit: BackfillUnit, client: BarSource, source: ConnectionSource) -> BarSource:
    """Where `unit`'s bars come from: the provider, or the symbol's stored finer bars."""
    if unit.derived_from is None:
        return client
    return StoredBarSource(source, unit.symbol, unit.asset_class, unit.derived_from)


def backfill_grouped_day(
    market: Market, day: date, symbols: Sequence[str], *, client: PolygonClient
) -> list[BackfillResult]:
    """Write market date `day`'s daily bar of `symbols` from one grouped-daily request.

    A symbol that may no longer run (deactivated, moved off 1d, or of another market since the
    plan) is skipped, not failed: the plan was right when made, and nothing about the message
    can improve by retrying it. A unit whose window turns out full (its first backfill, or
    bars still stored split-adjusted) is fetched with range requests instead.
    """
    source = db.get_database()
    with source.connection() as conn:
        rows = repository.get_symbols(conn, symbols)
    units = [
        BackfillUnit(row.symbol, row.asset_class, DAILY)
        for row in rows
        if _why_not_backfillable(row, DAILY) is None
        and row.asset_class in MARKET_ASSET_CLASSES[market]
    ]
    day_bars = client.grouped_daily(market, day, adjusted=False)
    grouped = GroupedDaySource(client, market, day, day_bars)
    return run_units(units, source=source, client=grouped, full_client=client, until=day)


# ----------------------------------------------------------------------------------------------
# One unit, in phases: begin, window, fetch, validate, write (or fail)


@dataclass(frozen=True, slots=True)
class _Window:
    """The market dates a run fetches, both inclusive; `full` when it reaches the beginning."""

    start: date
    end: date
    full: bool

    @classmethod
    def between(cls, start: date, end: date, *, full: bool) -> _Window:
        # A unit already past `end` (a later message ran first) re-fetches the end day only.
        return cls(start=min(start, end), end=end, full=full)


@dataclass(slots=True)
class _Run:
    """One run of a unit as it goes: what its history row and its result will say."""

    symbol: SymbolRef
    timeframe: str
    client: BarSource
    clock: Callable[[], datetime]
    started_at: datetime
    requests_before: int
    run_id: int | None = None
    window: _Window | None = None
    fetched: int = 0
    result: BackfillResult | None = None

    def requests(self) -> int:
        return self.client.request_count - self.requests_before

    def finish(
        self,
        status: RunOutcome,
        finished_at: datetime,
        *,
        written: int,
        requests: int,
        error: str | None,
    ) -> BackfillResult:
        window = self.window
        self.result = BackfillResult(
            symbol=self.symbol.symbol,
            timeframe=self.timeframe,
            status=status,
            bars_written=written,
            provider_requests=requests,
            error=error,
            started_at=self.started_at,
            finished_at=finished_at,
            run_id=self.run_id,
            range_start=window.start if window else None,
            range_end=window.end if window else None,
            bars_fetched=self.fetched,
            full=window.full if window else False,
        )
        return self.result


def backfill_one(
    conn_source: ConnectionSource,
    client: BarSource,
    symbol: SymbolRef,
    timeframe: str,
    *,
    since: date | None = None,
    full: bool = False,
    until: date | None = None,
    full_client: BarSource | None = None,
    settings: Settings | None = None,
    now: Callable[[], datetime] | None = None,
) -> BackfillResult:
    """Backfill one (symbol, timeframe) and return what happened; never raises for the unit's
    own failure (provider, data or database), which is recorded and reported instead. An
    interrupt (Ctrl-C, shutdown) is recorded as a failure too, then goes on its way.

    `since` fetches from that date at least; `full` from the unit's beginning; `until` is the
    last market date to fetch (default: today, UTC). `full_client` fetches a full window when
    `client` answers only part of one (a grouped-daily source holds one date); its requests are
    counted through `client`, which for a grouped source is that same client. `now` is the
    clock (tests pin it).
    """
    settings = settings or get_settings()
    clock = now or _utc_now
    run = _Run(symbol, timeframe, client, clock, clock(), client.request_count)
    try:
        state, extent = _begin(conn_source, run)
        run.window, splits = _window(
            client,
            symbol,
            timeframe,
            state=state,
            extent=extent,
            since=since,
            full=full,
            end=until or run.started_at.astimezone(UTC).date(),
            settings=settings,
        )
        fetcher = full_client if run.window.full and full_client is not None else client
        bars = _fetch(fetcher, symbol, timeframe, run.window)
        run.fetched = len(bars)
        masks = _validate(conn_source, symbol, timeframe, bars, splits, settings=settings)
        return _write(conn_source, run, bars, masks, splits)
    except Exception as exc:
        return _fail(conn_source, run, describe_error(exc, redact=client.redact))
    finally:
        if run.result is None:  # neither written nor failed: interrupted
            _fail(conn_source, run, INTERRUPTED)


def _begin(conn_source: ConnectionSource, run: _Run) -> tuple[BackfillState | None, BarExtent]:
    """Record the run as started and the unit as in progress; read where the unit stands."""
    symbol, timeframe = run.symbol.symbol, run.timeframe
    with conn_source.connection() as conn:
        with conn.transaction():
            run.run_id = repository.insert_run(
                conn, symbol=symbol, timeframe=timeframe, started_at=run.started_at
            )
            repository.mark_in_progress(conn, symbol=symbol, timeframe=timeframe, run_id=run.run_id)
            repository.roll_up_symbol_status(conn, symbol)
        return (
            repository.get_state(conn, symbol, timeframe),
            repository.get_bar_extent(conn, symbol, timeframe),
        )


def _window(
    client: BarSource,
    symbol: SymbolRef,
    timeframe: str,
    *,
    state: BackfillState | None,
    extent: BarExtent,
    since: date | None,
    full: bool,
    end: date,
    settings: Settings,
) -> tuple[_Window, list[Split]]:
    """The dates to fetch, and the stock's splits the provider lists from the window's start
    (or the last backfill, if earlier) on: a split executed since the last run is learnt even
    when the window starts after it."""
    still_adjusted = (
        state is not None and state.stored_prices == "split_adjusted" and extent.newest is not None
    )
    window = _plan_window(
        symbol,
        timeframe,
        extent=extent,
        since=since,
        full=full or still_adjusted,
        end=end,
        settings=settings,
    )
    if symbol.asset_class not in SESSION_ASSET_CLASSES:
        return window, []
    last_backfill = state.last_backfill if state else None
    check_from = window.start
    if last_backfill is not None:
        check_from = min(check_from, market_date(last_backfill, symbol.asset_class))
    ticker = _provider_ticker(symbol.symbol, symbol.asset_class)
    return window, list(client.splits(ticker, since=check_from))


def _plan_window(
    symbol: SymbolRef,
    timeframe: str,
    *,
    extent: BarExtent,
    since: date | None,
    full: bool,
    end: date,
    settings: Settings,
) -> _Window:
    depth = (
        settings.backfill_depth_daily_days
        if timeframe in DAILY_OR_LONGER
        else settings.backfill_depth_intraday_days
    )
    beginning = end - timedelta(days=depth)
    if extent.oldest is not None:
        beginning = min(beginning, market_date(extent.oldest, symbol.asset_class))
    if since is not None:
        return _Window.between(min(since, beginning) if full else since, end, full=full)
    if full or extent.newest is None:
        return _Window.between(beginning, end, full=True)
    return _Window.between(market_date(extent.newest, symbol.asset_class), end, full=False)


def _fetch(
    client: BarSource, symbol: SymbolRef, timeframe: str, window: _Window
) -> list[PolygonBar]:
    """Every bar of the window, oldest first, one per start time (a later page wins)."""
    multiplier, timespan = TIMEFRAMES[timeframe]
    ticker = _provider_ticker(symbol.symbol, symbol.asset_class)
    bars: list[PolygonBar] = []
    for page in client.aggregates(
        ticker, multiplier, timespan, window.start, window.end, adjusted=False
    ):
        bars.extend(page)
    if any(earlier.t >= later.t for earlier, later in pairwise(bars)):
        bars = sorted({bar.t: bar for bar in bars}.values(), key=lambda bar: bar.t)
    return bars


def _validate(
    conn_source: ConnectionSource,
    symbol: SymbolRef,
    timeframe: str,
    bars: Sequence[PolygonBar],
    splits: Sequence[Split],
    *,
    settings: Settings,
) -> list[int]:
    """One flag mask per bar, judged after the stored bars just before them, so an
    incremental run flags exactly what a full run would. Prices are judged in today's shares
    (the splits stored and the ones just learnt applied to both), as on adjusted data: a split
    is neither a price jump nor the start of a volume spike."""
    prior = PriorBars()
    factors = SplitFactors(())
    if bars:
        with conn_source.connection() as conn:
            first_day = market_date(_instant(bars[0].t), symbol.asset_class)
            known = {
                row.execution_date: row.split_to / row.split_from
                for row in repository.list_splits_of(conn, symbol.symbol, since=date.min)
            }
            known.update((split.execution_date, split.ratio) for split in splits)
            factors = SplitFactors(known.items())
            recent = repository.list_bars_before(
                conn,
                symbol.symbol,
                timeframe,
                before=_instant(bars[0].t),
                limit=settings.validation_volume_window,
            )
        prior = _prior_bars(recent, factors, timeframe)
        if factors.changes_after(first_day):
            bars = [factors.in_todays_shares(bar, timeframe) for bar in bars]
    return validate_bars(
        bars,
        timeframe=timeframe,
        asset_class=symbol.asset_class,
        thresholds=Thresholds.from_settings(settings),
        split_days={split.execution_date for split in splits},
        prior=prior,
    )


def _prior_bars(recent: Sequence[RecentBar], factors: SplitFactors, timeframe: str) -> PriorBars:
    """The stored bars just before the fetched ones (newest first), in today's shares, so
    validation continues where it stopped."""
    previous_close = next(
        (bar.close / factors.at(bar.time, timeframe) for bar in recent if bar.validated), None
    )
    return PriorBars(
        previous_close=previous_close,
        volumes=tuple(
            bar.volume * factors.at(bar.time, timeframe)
            for bar in reversed(recent)
            if bar.volume >= 0
        ),
    )


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _write(
    conn_source: ConnectionSource,
    run: _Run,
    bars: Sequence[PolygonBar],
    masks: Sequence[int],
    splits: Sequence[Split],
) -> BackfillResult:
    """Write the bars, the splits the unit learnt, the run's success and the unit's status in
    one transaction: a failed unit leaves neither its bars nor its splits behind."""
    # Set by the phases before this one.
    assert run.run_id is not None
    assert run.window is not None
    symbol, timeframe = run.symbol.symbol, run.timeframe
    with conn_source.connection() as conn, conn.transaction():
        written = repository.upsert_bars(
            conn,
            symbol=symbol,
            timeframe=timeframe,
            bars=(
                (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v, bar.vw, bar.n, mask)
                for bar, mask in zip(bars, masks, strict=True)
            ),
        )
        for split in splits:
            repository.upsert_split(
                conn,
                symbol=symbol,
                execution_date=split.execution_date,
                split_from=split.split_from,
                split_to=split.split_to,
            )
        finished_at = run.clock()
        requests = run.requests()
        repository.finish_run(
            conn,
            run.run_id,
            status="completed",
            finished_at=finished_at,
            range_start=run.window.start,
            range_end=run.window.end,
            bars_written=written,
            provider_requests=requests,
            error=None,
        )
        repository.mark_completed(
            conn, symbol=symbol, timeframe=timeframe, run_id=run.run_id, finished_at=finished_at
        )
        repository.roll_up_symbol_status(conn, symbol)
    log.info(
        "backfilled %s %s: %d bars fetched, %d written, %d not validated",
        symbol,
        timeframe,
        run.fetched,
        written,
        sum(1 for mask in masks if not is_validated(mask)),
    )
    return run.finish("completed", finished_at, written=written, requests=requests, error=None)


def _fail(conn_source: ConnectionSource, run: _Run, error: str) -> BackfillResult:
    """Record the run as failed with `error` and report it."""
    finished_at = run.clock()
    requests = run.requests()
    log.warning("backfill of %s %s failed: %s", run.symbol.symbol, run.timeframe, error)
    _record_failure(
        conn_source,
        run.symbol.symbol,
        run.timeframe,
        run_id=run.run_id,
        window=run.window,
        finished_at=finished_at,
        requests=requests,
        error=error,
    )
    return run.finish("failed", finished_at, written=0, requests=requests, error=error)


def _record_failure(
    conn_source: ConnectionSource,
    symbol: str,
    timeframe: str,
    *,
    run_id: int | None,
    window: _Window | None,
    finished_at: datetime,
    requests: int,
    error: str,
) -> None:
    """Write the failed run and status in their own transaction; if even that fails (the
    database is down), the caller's result still carries the error."""
    try:
        with conn_source.connection() as conn, conn.transaction():
            if run_id is None:
                run_id = repository.insert_run(
                    conn, symbol=symbol, timeframe=timeframe, started_at=finished_at
                )
            repository.finish_run(
                conn,
                run_id,
                status="failed",
                finished_at=finished_at,
                range_start=window.start if window else None,
                range_end=window.end if window else None,
                bars_written=0,
                provider_requests=requests,
                error=error,
            )
            repository.mark_failed(
                conn, symbol=symbol, timeframe=timeframe, run_id=run_id, error=error
            )
            repository.roll_up_symbol_status(conn, symbol)
    except Exception:
        log.exception("could not record the failed backfill of %s %s", symbol, timeframe)


def _utc_now() -> datetime:
    return datetime.now(UTC)
