"""Backfill orchestration: for each (symbol, timeframe), fetch bars from Polygon, validate them
and upsert them, recording the run and the unit's status.

Each (symbol, timeframe) is its own unit: its own transactions and its own failure, so one bad
ticker never stops the others. A unit fetches and validates everything before it writes, and
writes all its bars with its success in one transaction, so a failed run leaves no bar behind;
the run's history row is committed on its own, so a failure is still recorded. Re-running is
idempotent: the same bars upsert to the same rows, and unchanged rows are not rewritten.

Where a unit starts: from the newest stored bar, which is fetched again because it
may have been partial; for a unit with no bars, from a default depth per timeframe; for a stock
with a split since its last backfill, from the beginning again, because a split changes every
earlier adjusted price.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from chalicelib import db
from chalicelib.backfill import repository
from chalicelib.backfill.calendar import NEW_YORK
from chalicelib.backfill.models import (
    BackfillResult,
    BackfillUnit,
    BarExtent,
    RunOutcome,
    SymbolRef,
)
from chalicelib.backfill.validation import PriorBars, Thresholds, is_validated, validate_bars
from chalicelib.config import Settings, get_settings
from chalicelib.db import ConnectionSource
from chalicelib.errors import AppError, BadRequest, Conflict, NotFound
from chalicelib.marketdata.models import TIMEFRAME_SECONDS, TIMEFRAMES
from chalicelib.symbols.models import normalize_symbol

if TYPE_CHECKING:
    from chalicelib.polygon import PolygonBar, PolygonClient

log = logging.getLogger(__name__)

ProgressCallback = Callable[[BackfillResult], None]

# Daily and weekly bars go back years on a new symbol; intraday bars only days (there are 390
# minute bars in a stock session, 1,440 in a crypto day).
_DAILY_TIMEFRAMES = frozenset(
    name for name, seconds in TIMEFRAME_SECONDS.items() if seconds >= 86_400
)
_STOCK_LIKE = frozenset({"stock", "etf"})
_MAX_ERROR_LENGTH = 500


def run_backfill(
    *,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    since: date | None = None,
    full: bool = False,
    client: PolygonClient | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[BackfillResult]:
    """Backfill the named symbols (None: every active tracked symbol), each timeframe they track
    or only `timeframe`; one result per (symbol, timeframe), in order.

    Raises a domain error before anything runs if a named symbol is not tracked or inactive, or
    the timeframe is unknown; a unit's own failure is reported in its result instead.
    """
    source = db.get_database()
    with source.connection() as conn:
        units = plan_backfill(conn, symbols=symbols, timeframe=timeframe)
    return run_units(
        units, source=source, client=client, since=since, full=full, on_progress=on_progress
    )


def plan_backfill(
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
        rows = repository.get_symbols(conn, wanted)
        found = {row.symbol: row for row in rows}
        missing = [symbol for symbol in wanted if symbol not in found]
        if missing:
            raise NotFound(f"not a tracked symbol: {', '.join(missing)}")
        inactive = [symbol for symbol in wanted if not found[symbol].active]
        if inactive:
            raise Conflict(
                f"symbol is deactivated: {', '.join(inactive)}; reactivate it to backfill it"
            )
        if timeframe is not None:
            lacking = [symbol for symbol in wanted if timeframe not in found[symbol].timeframes]
            if lacking:
                raise BadRequest(f"{', '.join(lacking)} does not track the {timeframe} timeframe")
        rows = [found[symbol] for symbol in wanted]

    fresh: set[tuple[str, str]] = set()
    if fresh_since is not None:
        fresh = {
            (state.symbol, state.timeframe)
            for state in repository.list_states(conn, [row.symbol for row in rows])
            if state.status == "completed"
            and state.last_backfill is not None
            and state.last_backfill >= fresh_since
        }
    order = list(TIMEFRAMES)
    return [
        BackfillUnit(row.symbol, row.asset_class, name)
        for row in rows
        for name in sorted(row.timeframes, key=order.index)
        if (timeframe is None or name == timeframe) and (row.symbol, name) not in fresh
    ]


def run_units(
    units: Sequence[BackfillUnit],
    *,
    source: ConnectionSource | None = None,
    client: PolygonClient | None = None,
    since: date | None = None,
    full: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[BackfillResult]:
    """Run `units` one after the other; `on_progress` hears about each as it finishes."""
    if client is None:
        from chalicelib.polygon import PolygonClient

        client = PolygonClient.from_settings(get_settings())
    source = source or db.get_database()
    results = []
    for unit in units:
        result = backfill_one(source, client, unit, unit.timeframe, since=since, full=full)
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    return results


@dataclass(frozen=True, slots=True)
class _Window:
    start: date
    end: date
    full: bool


def backfill_one(
    conn_source: ConnectionSource,
    client: PolygonClient,
    symbol: SymbolRef,
    timeframe: str,
    *,
    since: date | None = None,
    full: bool = False,
    settings: Settings | None = None,
    now: Callable[[], datetime] | None = None,
) -> BackfillResult:
    """Backfill one (symbol, timeframe) and return what happened; never raises for the unit's
    own failure (provider, data or database), which is recorded and reported instead.

    `since` fetches from that date at least; `full` from the unit's beginning. `now` is the
    clock (tests pin it).
    """
    settings = settings or get_settings()
    clock = now or _utc_now
    started_at = clock()
    requests_before = _request_count(client)
    run_id: int | None = None
    window: _Window | None = None
    fetched = 0
    try:
        with conn_source.connection() as conn:
            with conn.transaction():
                run_id = repository.insert_run(
                    conn, symbol=symbol.symbol, timeframe=timeframe, started_at=started_at
                )
                repository.mark_in_progress(
                    conn, symbol=symbol.symbol, timeframe=timeframe, run_id=run_id
                )
                repository.roll_up_symbol_status(conn, symbol.symbol)
            state = repository.get_state(conn, symbol.symbol, timeframe)
            extent = repository.get_bar_extent(conn, symbol.symbol, timeframe)

        last_backfill = state.last_backfill if state else None
        window = _plan_window(
            symbol,
            timeframe,
            extent=extent,
            since=since,
            full=full,
            today=started_at.astimezone(UTC).date(),
            settings=settings,
        )
        split_days: set[date] = set()
        if symbol.asset_class in _STOCK_LIKE:
            window, split_days = _check_splits(
                client,
                symbol,
                window,
                extent=extent,
                last_backfill=last_backfill,
                settings=settings,
                timeframe=timeframe,
            )
        bars = _fetch(client, symbol, timeframe, window)
        fetched = len(bars)

        prior = PriorBars()
        if bars:
            with conn_source.connection() as conn:
                prior = _prior_bars(conn, symbol.symbol, timeframe, bars[0].t, settings=settings)
        masks = validate_bars(
            bars,
            timeframe=timeframe,
            asset_class=symbol.asset_class,
            thresholds=Thresholds.from_settings(settings),
            split_days=split_days,
            prior=prior,
        )
        with conn_source.connection() as conn, conn.transaction():
            written = repository.upsert_bars(
                conn,
                symbol=symbol.symbol,
                timeframe=timeframe,
                bars=(
                    (bar.t, bar.o, bar.h, bar.l, bar.c, bar.v, bar.vw, bar.n, mask)
                    for bar, mask in zip(bars, masks, strict=True)
                ),
            )
            finished_at = clock()
            requests = _request_count(client) - requests_before
            repository.finish_run(
                conn,
                run_id,
                status="completed",
                finished_at=finished_at,
                range_start=window.start,
                range_end=window.end,
                bars_written=written,
                provider_requests=requests,
                error=None,
            )
            repository.mark_completed(
                conn,
                symbol=symbol.symbol,
                timeframe=timeframe,
                run_id=run_id,
                finished_at=finished_at,
            )
            repository.roll_up_symbol_status(conn, symbol.symbol)
        invalid = sum(1 for mask in masks if not is_validated(mask))
        log.info(
            "backfilled %s %s: %d bars fetched, %d written, %d not validated",
            symbol.symbol,
            timeframe,
            fetched,
            written,
            invalid,
        )
        return _result(
            symbol,
            timeframe,
            "completed",
            started_at,
            finished_at,
            run_id=run_id,
            window=window,
            written=written,
            fetched=fetched,
            requests=requests,
            error=None,
        )
    except BaseException as exc:  # the unit fails alone; every cause is recorded the same way
        interrupted = not isinstance(exc, Exception)
        error = (
            "interrupted before it finished"
            if interrupted
            else describe_error(exc, secrets=_secrets_of(client, settings))
        )
        finished_at = clock()
        requests = _request_count(client) - requests_before
        log.warning("backfill of %s %s failed: %s", symbol.symbol, timeframe, error)
        _record_failure(
            conn_source,
            symbol.symbol,
            timeframe,
            run_id=run_id,
            window=window,
            finished_at=finished_at,
            requests=requests,
            error=error,
        )
        if interrupted:
            raise  # Ctrl-C or shutdown: recorded as failed, then on its way
        return _result(
            symbol,
            timeframe,
            "failed",
            started_at,
            finished_at,
            run_id=run_id,
            window=window,
            written=0,
            fetched=fetched,
            requests=requests,
            error=error,
        )


def _plan_window(
    symbol: SymbolRef,
    timeframe: str,
    *,
    extent: BarExtent,
    since: date | None,
    full: bool,
    today: date,
    settings: Settings,
) -> _Window:
    depth = (
        settings.backfill_depth_daily_days
        if timeframe in _DAILY_TIMEFRAMES
        else settings.backfill_depth_intraday_days
    )
    beginning = today - timedelta(days=depth)
    if extent.oldest is not None:
        beginning = min(beginning, market_date(extent.oldest, symbol.asset_class))
    if since is not None:
        return _Window(start=min(since, beginning) if full else since, end=today, full=full)
    if full or extent.newest is None:
        return _Window(start=beginning, end=today, full=True)
    return _Window(start=market_date(extent.newest, symbol.asset_class), end=today, full=False)


def _check_splits(
    client: PolygonClient,
    symbol: SymbolRef,
    window: _Window,
    *,
    extent: BarExtent,
    last_backfill: datetime | None,
    settings: Settings,
    timeframe: str,
) -> tuple[_Window, set[date]]:
    """Ask for the stock's splits once: a split executed since the last backfill widens the
    window to a full re-backfill, and every split day inside the window exempts that day from
    the price-jump flag."""
    from chalicelib.polygon import provider_ticker

    ticker = provider_ticker(symbol.symbol, symbol.asset_class)
    last_day = market_date(last_backfill, symbol.asset_class) if last_backfill else None
    check_from = min(window.start, last_day) if last_day else window.start
    splits = list(client.splits(ticker, since=check_from))
    if (
        not window.full
        and last_day is not None
        and any(split.execution_date >= last_day for split in splits)
    ):
        window = _plan_window(
            symbol,
            timeframe,
            extent=extent,
            since=None,
            full=True,
            today=window.end,
            settings=settings,
        )
        if window.start < check_from:
            splits = list(client.splits(ticker, since=window.start))
    return window, {split.execution_date for split in splits}


def _fetch(
    client: PolygonClient, symbol: SymbolRef, timeframe: str, window: _Window
) -> list[PolygonBar]:
    """Every bar of the window, oldest first, one per start time (a later page wins)."""
    from chalicelib.polygon import provider_ticker

    multiplier, timespan = TIMEFRAMES[timeframe]
    ticker = provider_ticker(symbol.symbol, symbol.asset_class)
    bars: list[PolygonBar] = []
    for page in client.aggregates(ticker, multiplier, timespan, window.start, window.end):
        bars.extend(page)
    if any(earlier.t >= later.t for earlier, later in pairwise(bars)):
        bars = sorted({bar.t: bar for bar in bars}.values(), key=lambda bar: bar.t)
    return bars


def _prior_bars(
    conn: db.Connection, symbol: str, timeframe: str, first_t: int, *, settings: Settings
) -> PriorBars:
    """The stored bars just before the fetched ones, so validation continues where it stopped."""
    before = datetime.fromtimestamp(first_t / 1000, UTC)
    recent = repository.list_bars_before(
        conn, symbol, timeframe, before=before, limit=settings.validation_volume_window
    )
    previous_close = next((bar.close for bar in recent if bar.validated), None)
    return PriorBars(
        previous_close=previous_close,
        volumes=tuple(bar.volume for bar in reversed(recent) if bar.volume >= 0),
    )


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


def _result(
    symbol: SymbolRef,
    timeframe: str,
    status: RunOutcome,
    started_at: datetime,
    finished_at: datetime,
    *,
    run_id: int | None,
    window: _Window | None,
    written: int,
    fetched: int,
    requests: int,
    error: str | None,
) -> BackfillResult:
    return BackfillResult(
        symbol=symbol.symbol,
        timeframe=timeframe,
        status=status,
        bars_written=written,
        provider_requests=requests,
        error=error,
        started_at=started_at,
        finished_at=finished_at,
        run_id=run_id,
        range_start=window.start if window else None,
        range_end=window.end if window else None,
        bars_fetched=fetched,
        full=window.full if window else False,
    )


def market_date(moment: datetime, asset_class: str) -> date:
    """The trading day of a bar start: New York's date for stocks and ETFs, UTC's for crypto."""
    zone = NEW_YORK if asset_class in _STOCK_LIKE else UTC
    return moment.astimezone(zone).date()


_SECRET_PARAMETER = re.compile(r"(?i)(api_?key|token|secret|password)=[^&\s'\"]+")
_BEARER = re.compile(r"(?i)bearer\s+[^\s'\"]+")
_WHITESPACE = re.compile(r"\s+")


def describe_error(exc: BaseException, *, secrets: Sequence[str] = ()) -> str:
    """One readable line for a failed unit, stored and shown to operators: never a secret, a
    traceback or an unbounded provider body."""
    from chalicelib.polygon import PolygonError

    if isinstance(exc, PolygonError):
        text = f"provider: {exc}"
    elif isinstance(exc, AppError):
        text = exc.message
    elif _is_database_error(exc):
        text = f"database: {_first_line(exc)}"
    else:
        text = f"{type(exc).__name__}: {_first_line(exc)}"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SECRET_PARAMETER.sub(lambda match: f"{match.group(1)}=***", text)
    text = _BEARER.sub("Bearer ***", text)
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > _MAX_ERROR_LENGTH:
        text = text[: _MAX_ERROR_LENGTH - 1] + "…"
    return text


def _is_database_error(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.Error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"


def _secrets_of(client: Any, settings: Settings) -> list[str]:
    return [
        secret
        for secret in (getattr(client, "api_key", None), settings.polygon_api_key)
        if isinstance(secret, str) and secret
    ]


def _request_count(client: Any) -> int:
    count = getattr(client, "request_count", 0)
    return count if isinstance(count, int) else 0


def _utc_now() -> datetime:
    return datetime.now(UTC)
