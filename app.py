"""mdw: the Chalice application. Routes, schedules and handlers are registered here; what
they do lives in chalicelib/."""

from __future__ import annotations

from typing import Any

from chalice import Chalice

from chalicelib import jobs
from chalicelib.errors import AppError
from chalicelib.health.routes import bp as health_bp
from chalicelib.health.service import ensure_schema_current
from chalicelib.http import error_response
from chalicelib.keys.authorizer import bp as authorizer_bp

app = Chalice(app_name="mdw")
app.register_blueprint(authorizer_bp)
app.register_blueprint(health_bp)


@app.middleware("http")
def require_current_schema(event: Any, get_response: Any) -> Any:
    """Once per container: refuse to serve (503) until the schema is at this code's version."""
    if event.path != "/health":
        try:
            ensure_schema_current()
        except AppError as exc:
            return error_response(exc)
    return get_response(event)


@app.lambda_function(name="migrate")
def migrate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply pending migrations; `{"dry_run": true}` lists them instead. A failure raises, so
    the invocation itself fails (and `chalice invoke` exits non-zero) with the runner's message."""
    dry_run = bool((event or {}).get("dry_run", False))
    return jobs.migrate(dry_run=dry_run).as_dict()
