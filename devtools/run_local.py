"""`make run`: everything a laptop needs, then `chalice local`.

Embedded PostgreSQL (unless DATABASE_URL is set) → migrations → bootstrap (first admin key,
core symbols) → `chalice local` on the given port. The admin key is printed once, when it is
created; a later run says that one exists.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from chalicelib import db, jobs
from chalicelib.bootstrap import bootstrap
from chalicelib.config import PROJECT_ROOT, get_settings
from chalicelib.errors import AppError


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

    base = f"http://{args.host}:{args.port}"
    print(f"migrations applied: {len(summary.migrations_applied)}; schema verified")
    print(f"symbols seeded: {summary.symbols_seeded}")
    if summary.admin_key:
        print("\nAdmin API key (shown once; store it now):")
        print(f"  {summary.admin_key}\n")
        key_hint = summary.admin_key
    else:
        print(
            "\nAn admin key already exists (`.venv/bin/mdw bootstrap --new-admin-key` for another)."
        )
        key_hint = "$MDW_KEY"
    print(f"Serving on {base}")
    print(f"  curl {base}/health")
    print(
        f'  curl -H "Authorization: Bearer {key_hint}" {base}/api/v1/admin/api-keys\n', flush=True
    )

    env = {**os.environ, "DATABASE_URL": url}
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice), "local", "--host", args.host, "--port", str(args.port)]
    try:
        return subprocess.call(command, cwd=PROJECT_ROOT, env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
