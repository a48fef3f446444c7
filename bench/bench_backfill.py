"""Backfill end to end: 100 stocks × 5 years of daily bars from the simulator, and pacing.

Throughput: 100 new symbols, one `1d` unit each (a split check and five years of bars per
symbol), run by `run_units` exactly as `mdw backfill` runs them, against a scratch database and
the Polygon simulator in its own process (so its work does not share this interpreter's GIL),
with no pacing. The time is split into provider (inside the client's calls: HTTP, the
simulator's work, JSON decoding), validation, the bar upsert, and the rest (run history,
status, planning reads, orchestration). The baseline is the provider time alone: a backfill
cannot be faster than fetching its bars.

Pacing: 5 requests a minute (the free plan) on a small case, 6 stocks = 12 requests, with a
fake clock: the client's `sleep` advances a virtual clock instead of waiting, while HTTP and
database time are real and included. The client paces with a sliding one-minute window, so
the floor for n requests is floor((n - 1) / 5) minutes; target ≤ 1.05× that floor.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg

from bench.common import scratch_database
from chalicelib import db
from chalicelib.backfill import repository, service
from chalicelib.backfill.models import BackfillResult, BackfillUnit
from chalicelib.config import PROJECT_ROOT
from chalicelib.polygon import PolygonClient

SYMBOLS = 100
PACED_SYMBOLS = 6
MAX_RPM = 5
API_KEY = "bench-key"
PACING_TARGET = 1.05


@contextmanager
def simulator_process() -> Iterator[str]:
    """`python -m devtools.polygon_sim` on a free port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable, "-m", "devtools.polygon_sim", "--port", str(port),
            "--api-key", API_KEY, "--accept-any-ticker",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Stopwatch:
    """Accumulated seconds per phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - started)

        return timed


class TimedClient:
    """The real client, with the time spent inside its calls (pages included) recorded."""

    def __init__(self, client: PolygonClient, stopwatch: Stopwatch) -> None:
        self._client = client
        self._stopwatch = stopwatch
        self.splits = stopwatch.wrap("provider", client.splits)

    @property
    def request_count(self) -> int:
        return self._client.request_count

    def aggregates(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        pages = self._client.aggregates(*args, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                page = next(pages)
            except StopIteration:
                return
            finally:
                self._stopwatch.add("provider", time.perf_counter() - started)
            yield page


def _track(url: str, symbols: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO tracked_symbols (symbol, asset_class, timeframes)
            SELECT unnest(%(symbols)s::text[]), 'stock', '{1d}'
            """,
            {"symbols": symbols},
        )


def _throughput(sim_url: str) -> tuple[float, Stopwatch, list[BackfillResult]]:
    symbols = [f"SYM{n:03d}" for n in range(SYMBOLS)]
    stopwatch = Stopwatch()
    real_validate, real_upsert = service.validate_bars, repository.upsert_bars
    with scratch_database() as url:
        _track(url, symbols)
        source = db.Database(url)
        units = [BackfillUnit(symbol, "stock", "1d") for symbol in symbols]
        service.validate_bars = stopwatch.wrap("validation", real_validate)  # type: ignore[assignment]
        repository.upsert_bars = stopwatch.wrap("upsert", real_upsert)  # type: ignore[assignment]
        try:
            with PolygonClient(sim_url, API_KEY) as client:
                started = time.perf_counter()
                results = service.run_units(
                    units,
                    source=source,
                    client=TimedClient(client, stopwatch),  # type: ignore[arg-type]
                )
                elapsed = time.perf_counter() - started
        finally:
            service.validate_bars = real_validate  # type: ignore[assignment]
            repository.upsert_bars = real_upsert  # type: ignore[assignment]
            source.close()
    return elapsed, stopwatch, results


class VirtualClock:
    """Real monotonic time plus every second the client was told to sleep."""

    def __init__(self) -> None:
        self.slept = 0.0

    def now(self) -> float:
        return time.monotonic() + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)


def _paced(sim_url: str) -> tuple[float, float, int, list[BackfillResult]]:
    symbols = [f"PACE{n}" for n in range(PACED_SYMBOLS)]
    clock = VirtualClock()
    with scratch_database() as url:
        _track(url, symbols)
        source = db.Database(url)
        units = [BackfillUnit(symbol, "stock", "1d") for symbol in symbols]
        try:
            with PolygonClient(
                sim_url, API_KEY, max_rpm=MAX_RPM, sleep=clock.sleep, clock=clock.now
            ) as client:
                started = clock.now()
                results = service.run_units(
                    units, source=source, client=client, since=date(2024, 1, 2)
                )
                elapsed = clock.now() - started
                requests = client.request_count
        finally:
            source.close()
    floor = (requests - 1) // MAX_RPM * 60.0
    return elapsed, floor, requests, results


def run() -> str:
    with simulator_process() as sim_url:
        elapsed, stopwatch, results = _throughput(sim_url)
        paced_elapsed, floor, paced_requests, paced_results = _paced(sim_url)

    failed = [r for r in results + paced_results if r.status != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} units failed, first: {failed[0].error}")
    bars = sum(r.bars_written for r in results)
    requests = sum(r.provider_requests for r in results)
    provider = stopwatch.seconds.get("provider", 0.0)
    validation = stopwatch.seconds.get("validation", 0.0)
    upsert = stopwatch.seconds.get("upsert", 0.0)
    rest = elapsed - provider - validation - upsert

    def share(seconds: float) -> str:
        return f"| {seconds:.2f} s | {seconds / elapsed:.0%} |"

    ratio = paced_elapsed / floor
    return "\n".join(
        [
            "## Backfill end to end",
            "",
            f"{SYMBOLS} new stocks × five years of daily bars (`1d` unit each: a split check "
            "and one page of bars), `run_units` against a scratch database and the simulator "
            "in its own process, no pacing.",
            "",
            "| what | value |",
            "|---|---|",
            f"| symbols | {SYMBOLS} ({bars:,} bars written, {requests} provider requests) |",
            f"| total | {elapsed:.2f} s |",
            f"| throughput | **{SYMBOLS / elapsed:.1f} symbols/s**, {bars / elapsed:,.0f} bars/s |",
            f"| provider time alone (baseline) | {provider:.2f} s → {elapsed / provider:.2f}× "
            "of it for the whole backfill |",
            "",
            "Where the time goes:",
            "",
            "| phase | time | share |",
            "|---|---|---|",
            f"| provider (HTTP, simulator, JSON decoding) {share(provider)}",
            f"| validation {share(validation)}",
            f"| bar upsert (COPY + INSERT … ON CONFLICT) {share(upsert)}",
            f"| run history, status, commits, reads, orchestration {share(rest)}",
            "",
            f"Pacing at {MAX_RPM} requests/minute, {PACED_SYMBOLS} stocks since 2024-01-02 = "
            f"{paced_requests} requests, **fake clock** (sleeps advance a virtual clock; HTTP "
            "and database time are real):",
            "",
            "| what | value |",
            "|---|---|",
            f"| pacing floor (sliding minute: floor((n − 1) / {MAX_RPM}) min) | {floor:.0f} s |",
            f"| virtual elapsed | {paced_elapsed:.2f} s |",
            f"| ratio | **{ratio:.3f}×** (target ≤ {PACING_TARGET}×) |",
        ]
    )
