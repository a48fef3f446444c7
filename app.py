"""mdw: the Chalice application. Routes, schedules and handlers are registered here; what
they do lives in chalicelib/."""

from __future__ import annotations

from typing import Any

from chalice import Chalice

from chalicelib import jobs
from chalicelib.health.routes import bp as health_bp

app = Chalice(app_name="mdw")
app.register_blueprint(health_bp)


@app.lambda_function(name="migrate")
def migrate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply pending migrations; `{"dry_run": true}` lists them instead. A failure raises, so
    the invocation itself fails (and `chalice invoke` exits non-zero) with the runner's message."""
    dry_run = bool((event or {}).get("dry_run", False))
    return jobs.migrate(dry_run=dry_run).as_dict()
