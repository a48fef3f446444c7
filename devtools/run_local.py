"""`make run`: everything a laptop needs, in one process that stops everything it started.

The port is bound first (a busy port costs one line and nothing else) → embedded PostgreSQL
(unless DATABASE_URL is set; a server or handle file left by an unclean stop is adopted) →
migrations → bootstrap (first admin key, core symbols) → the Polygon simulator on a free port
(unless POLYGON_API_KEY or POLYGON_API_KEY_SECRET_ARN is set: then the real provider) → a first
backfill of the core symbols → the API on the bound port (devtools/local_server.py) and the
cloud's schedule in-process (devtools/local_scheduler.py). The simulator's address and key are
written under the data directory for the `mdw` commands beside it.

SIGINT, SIGTERM and SIGHUP stop the server, the scheduler, the simulator and the embedded
PostgreSQL. Nothing reloads: `make dev` (`--reload`) restarts the whole process when a source
file changes, never for the database's own files under the data directory.

The backfill fetches only what is missing: units completed since midnight UTC are skipped and
the others continue from their newest bar, so a second `make run` starts at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time as time_module
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from chalicelib import container, db, jobs
from chalicelib.backfill.cli import backfill_with_progress, summary_lines
from chalicelib.backfill.models import BackfillResult
from chalicelib.backfill.service import plan_units
from chalicelib.bootstrap import CORE_SYMBOLS, bootstrap
from chalicelib.config import PROJECT_ROOT, get_settings
from chalicelib.errors import AppError
from chalicelib.local_state import LocalServerState, process_alive, remove_state, write_state
from devtools.polygon_sim import PolygonSimulator

if TYPE_CHECKING:
    from devtools.local_server import LocalServer

EXAMPLE_SYMBOL = "AAPL"
EXAMPLE_DAYS = 30
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARENT_CHECK_SECONDS = 0.5
# `make dev` restarts on changes to these, and only these (never the data directory).
SOURCE_GLOBS = ("app.py", "chalicelib/**/*.py", "migrations/*.sql", "devtools/*.py")


class Stop(Exception):
    """A stop signal arrived: unwind, stopping everything that was started."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # One stop is enough: a second Ctrl-C must not interrupt the stopping itself.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--log-format",
        choices=("human", "json"),
        default="human",
        help="one short line per request (default), or the JSON lines Lambda writes",
    )
    parser.add_argument(
        "--plan-every",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how often the local scheduler runs the backfill planner (default 20)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart when a source file changes (`make dev`); never for the data directory",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reload:
        return reload_on_source_changes([a for a in (argv or sys.argv[1:]) if a != "--reload"])
    try:
        sock = bind_port(args.host, args.port)
    except OSError as exc:
        print(port_refusal(args.host, args.port, exc), file=sys.stderr)
        return 2
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    try:
        return serve(args, sock)
    except (Stop, KeyboardInterrupt):
        return 0
    finally:
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def bind_port(host: str, port: int) -> socket.socket:
    from devtools.local_server import bind

    return bind(host, port)


def port_refusal(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"mdw: port {port} on {host} is already in use; "
            f"pick another with `make run PORT={port + 1}`"
        )
    return f"mdw: cannot listen on {host}:{port}: {exc.strerror or exc}"


def serve(args: argparse.Namespace, sock: socket.socket) -> int:
    from devtools.local_scheduler import LocalScheduler
    from devtools.local_server import LocalServer, human_records

    settings = get_settings()
    if not settings.database_url:
        pruned = prune_stale_handles(settings.data_dir / "pg")
        if pruned:
            print(f"embedded PostgreSQL: dropped handles of stopped processes {pruned}")
    try:
        url = db.resolve_database_url(settings)
        with db.connect(url, connect_timeout=settings.connect_timeout_seconds) as conn:
            summary = bootstrap(conn, migration_options=jobs.migration_options())
    except AppError as exc:
        print(f"mdw: {exc.message}", file=sys.stderr)
        return 1
    print(f"migrations applied: {len(summary.migrations_applied)}; schema verified")
    print(f"symbols seeded: {summary.symbols_seeded}")

    simulator = None
    scheduler = None
    server = None
    data_dir = settings.data_dir
    try:
        if not (settings.polygon_api_key or settings.polygon_api_key_secret_arn):
            simulator = start_simulator()
            print(
                f"Polygon simulator on {simulator.url} (set POLYGON_API_KEY to use Polygon itself)"
            )
        else:
            print(f"Polygon: {get_settings().polygon_base_url}")
        try:
            first_backfill(url)
        except AppError as exc:
            # The API is still worth serving: the data is fetched again on the next start.
            print(f"mdw: the first backfill did not run: {exc.message}", file=sys.stderr)

        if args.log_format == "human":
            from chalicelib.ops import observability

            observability.write_records_with(human_records(sys.stdout))
        server = LocalServer(sock, request_lines=sys.stdout if args.log_format == "human" else None)
        write_state(
            data_dir,
            LocalServerState(
                pid=os.getpid(),
                url=server.url,
                polygon_base_url=simulator.url if simulator else None,
                polygon_api_key=simulator.api_key if simulator else None,
            ),
        )
        scheduler = LocalScheduler(plan_every=args.plan_every)
        print_examples(server.url, summary.admin_key)
        for line in scheduler.describe():
            print(line)
        print(
            "the mdw commands beside this server use its database and simulator; stop with Ctrl-C",
            flush=True,
        )
        server.start()
        scheduler.start()
        wait_for_stop(server)
        return 0
    finally:
        if server is not None:
            server.stop()
        if scheduler is not None:
            scheduler.stop()
        if simulator is not None:
            simulator.stop()
        remove_state(data_dir, pid=os.getpid())
        from chalicelib.ops import observability

        observability.write_records_with(None)
        # The embedded PostgreSQL stops with this process (pgserver's exit hook) unless
        # another process of the checkout still uses it.


def wait_for_stop(server: LocalServer) -> None:
    """Serve until a stop signal raises Stop here, or until the process that started this one
    (make) is gone: `kill <make's pid>` and a closed terminal reach make, which does not pass
    every signal on. Tests replace this to use the server."""
    parent = os.getppid()
    while os.getppid() == parent:
        time_module.sleep(PARENT_CHECK_SECONDS)
    print("mdw: the process that started make run has exited; stopping", file=sys.stderr)


def print_examples(base: str, admin_key: str | None) -> None:
    if admin_key:
        print("\nAdmin API key (shown once; store it now):")
        print(f"  {admin_key}\n")
        key_value = admin_key
    else:
        print(
            "\nAn admin key already exists (`.venv/bin/mdw bootstrap --new-admin-key` for another)."
        )
        key_value = "<your admin key>"
    start = (datetime.now(UTC).date() - timedelta(days=EXAMPLE_DAYS)).isoformat()
    print(f"Serving on {base}")
    print(f"  export MDW_URL={base} MDW_KEY={key_value}")
    print('  curl "$MDW_URL/health"')
    auth = '-H "Authorization: Bearer $MDW_KEY"'
    print(f'  curl {auth} "$MDW_URL/api/v1/historical/{EXAMPLE_SYMBOL}?start={start}"')
    print(f'  curl {auth} "$MDW_URL/api/v1/admin/api-keys"')
    print(f"  console: {base}/console (sign in with the key); API reference: {base}/docs\n")


def prune_stale_handles(pgdata: Path) -> list[int]:
    """Drop the ids of exited processes from pgserver's handle file, so the server (adopted if
    it was left running) is stopped when the last live process using it exits."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    stale = [pid for pid in pids if not process_alive(pid)]
    if stale:
        path.write_text(json.dumps([pid for pid in pids if pid not in stale]))
    return stale


def source_files() -> Iterator[Path]:
    for pattern in SOURCE_GLOBS:
        yield from PROJECT_ROOT.glob(pattern)


def _snapshot() -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in source_files() if path.is_file()}


def reload_on_source_changes(child_args: list[str]) -> int:
    """`make dev`: run the launcher as a child; when a source file changes, stop it (it stops
    everything it started) and start it again. A stop signal stops the child and this."""
    command = [sys.executable, "-m", "devtools.run_local", *child_args]
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    parent = os.getppid()
    try:
        while not stopping.is_set() and os.getppid() == parent:
            seen = _snapshot()
            child = subprocess.Popen(command, cwd=PROJECT_ROOT)
            while (
                not stopping.is_set()
                and child.poll() is None
                and os.getppid() == parent
                and _snapshot() == seen
            ):
                stopping.wait(1.0)
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                child.wait()
            elif not stopping.is_set() and _snapshot() == seen:
                return child.returncode  # it stopped by itself (a busy port, a failed start)
            if not stopping.is_set() and os.getppid() == parent:
                print("make dev: a source file changed; restarting", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def start_simulator() -> PolygonSimulator:
    """The simulator on a free port, with a key of its own; the provider settings point at it,
    in this process and in the `chalice local` child that inherits the environment."""
    api_key = f"sim-{secrets.token_urlsafe(12)}"
    # Any well-formed ticker is served, so a symbol added through the API or `mdw symbols add`
    # gets history locally too.
    simulator = PolygonSimulator(api_key=api_key, accept_any_ticker=True).start()
    os.environ["POLYGON_BASE_URL"] = simulator.url
    os.environ["POLYGON_API_KEY"] = api_key
    container.reset()  # the settings are read again, with the simulator's
    return simulator


def first_backfill(url: str) -> list[BackfillResult]:
    """Backfill the active core symbols' units that have not completed today."""
    from chalicelib.polygon import PolygonClient

    settings = get_settings()
    source = db.Database(url, connect_timeout=settings.connect_timeout_seconds)
    try:
        with source.connection() as conn:
            core = {symbol for symbol, _ in CORE_SYMBOLS}
            midnight = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
            # Every active symbol's units, less those completed today; only the core ones.
            units = [unit for unit in plan_units(conn, fresh_since=midnight) if unit.symbol in core]
        if not units:
            print("backfill: the core symbols are up to date")
            return []
        print(f"backfill: {len(units)} core symbol timeframes to bring up to date", flush=True)
        with PolygonClient.from_settings(settings) as client:
            results = backfill_with_progress(units, client=client, source=source)
    finally:
        source.close()
    failed = [result for result in results if result.status == "failed"]
    if failed:
        for line in summary_lines(failed):
            print(line, file=sys.stderr)
    else:
        print(summary_lines(results)[-1])
    return results


if __name__ == "__main__":
    sys.exit(main())
