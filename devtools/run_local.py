"""`make run`: everything a laptop needs, then `chalice local`.

Embedded PostgreSQL (unless DATABASE_URL is set) → migrations → bootstrap (first admin key,
core symbols) → the Polygon simulator on a free port (unless POLYGON_API_KEY or
POLYGON_API_KEY_SECRET_ARN is set: then the real provider) → a first backfill of the core
symbols with a progress line → `chalice local` on the given port, with the same provider
settings, so symbol checks and on-demand backfills reach the same simulator. The admin key is
printed once, when it is created; a later run says that one exists.

The backfill fetches only what is missing: units completed since midnight UTC are skipped and
the others continue from their newest bar, so a second `make run` starts at once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from chalicelib import db, jobs
from chalicelib.backfill import repository as backfill_repository
from chalicelib.backfill.cli import backfill_with_progress, summary_lines
from chalicelib.backfill.models import BackfillResult
from chalicelib.backfill.service import plan_backfill
from chalicelib.bootstrap import CORE_SYMBOLS, bootstrap
from chalicelib.config import PROJECT_ROOT, get_settings
from chalicelib.errors import AppError
from devtools.polygon_sim import PolygonSimulator

EXAMPLE_SYMBOL = "AAPL"
EXAMPLE_DAYS = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    settings = get_settings()
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
    if not (settings.polygon_api_key or settings.polygon_api_key_secret_arn):
        simulator = start_simulator()
        print(f"Polygon simulator on {simulator.url} (set POLYGON_API_KEY to use Polygon itself)")
    else:
        print(f"Polygon: {get_settings().polygon_base_url}")
    try:
        try:
            first_backfill(url)
        except AppError as exc:
            # The API is still worth serving: the data is fetched again on the next start.
            print(f"mdw: the first backfill did not run: {exc.message}", file=sys.stderr)

        base = f"http://{args.host}:{args.port}"
        if summary.admin_key:
            print("\nAdmin API key (shown once; store it now):")
            print(f"  {summary.admin_key}\n")
            key_hint = summary.admin_key
        else:
            print(
                "\nAn admin key already exists "
                "(`.venv/bin/mdw bootstrap --new-admin-key` for another)."
            )
            key_hint = "$MDW_KEY"
        start = (datetime.now(UTC).date() - timedelta(days=EXAMPLE_DAYS)).isoformat()
        auth = f'-H "Authorization: Bearer {key_hint}"'
        print(f"Serving on {base}")
        print(f"  curl {base}/health")
        print(f'  curl {auth} "{base}/api/v1/historical/{EXAMPLE_SYMBOL}?start={start}"')
        print(f"  curl {auth} {base}/api/v1/admin/api-keys\n", flush=True)

        env = {**os.environ, "DATABASE_URL": url}
        chalice = Path(sys.executable).parent / "chalice"
        # The local stage carries no deployment environment: this process's settings decide.
        command = [str(chalice), "local", "--stage", "local"]
        command += ["--host", args.host, "--port", str(args.port)]
        return subprocess.call(command, cwd=PROJECT_ROOT, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if simulator is not None:
            simulator.stop()


def start_simulator() -> PolygonSimulator:
    """The simulator on a free port, with a key of its own; the provider settings point at it,
    in this process and in the `chalice local` child that inherits the environment."""
    api_key = f"sim-{secrets.token_urlsafe(12)}"
    simulator = PolygonSimulator(api_key=api_key).start()
    os.environ["POLYGON_BASE_URL"] = simulator.url
    os.environ["POLYGON_API_KEY"] = api_key
    get_settings.cache_clear()
    return simulator


def first_backfill(url: str) -> list[BackfillResult]:
    """Backfill the active core symbols' units that have not completed today."""
    from chalicelib.polygon import PolygonClient

    settings = get_settings()
    source = db.Database(url, connect_timeout=settings.connect_timeout_seconds)
    try:
        with source.connection() as conn:
            core = {symbol for symbol, _ in CORE_SYMBOLS}
            active_core = [
                row.symbol
                for row in backfill_repository.list_active_symbols(conn)
                if row.symbol in core
            ]
            midnight = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
            units = (
                plan_backfill(conn, symbols=active_core, fresh_since=midnight)
                if active_core
                else []
            )
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
