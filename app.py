"""mdw: the Chalice application. Routes, schedules and handlers are registered here; what
they do lives in chalicelib/."""

from __future__ import annotations

from typing import Any

from chalice import Chalice
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.config import get_settings
from chalicelib.errors import AppError
from chalicelib.health.routes import bp as health_bp
from chalicelib.health.routes import ensure_schema_current
from chalicelib.http import answer_in_one_body, error_response
from chalicelib.keys.authorizer import bp as authorizer_bp
from chalicelib.keys.middleware import enforce_key_policy
from chalicelib.keys.routes import bp as keys_bp
from chalicelib.marketdata.routes import bp as marketdata_bp
from chalicelib.openapi_routes import DOCUMENT_PATH
from chalicelib.openapi_routes import bp as openapi_bp
from chalicelib.ops import handlers as ops
from chalicelib.ops.observability import configure_logging
from chalicelib.pages.routes import PAGE_ROUTES
from chalicelib.pages.routes import bp as pages_bp
from chalicelib.polygon_api.routes import bp as polygon_api_bp
from chalicelib.polygon_api.routes import polygon_error_shape
from chalicelib.symbols.routes import bp as symbols_bp

app = Chalice(app_name="mdw")
app.register_blueprint(authorizer_bp)
app.register_blueprint(health_bp)
app.register_blueprint(keys_bp)
app.register_blueprint(symbols_bp)
app.register_blueprint(marketdata_bp)
app.register_blueprint(polygon_api_bp)
app.register_blueprint(openapi_bp)
app.register_blueprint(pages_bp)


@app.middleware("http")
def one_error_body(event: Any, get_response: Any) -> Any:
    """Outermost: every answer, including Chalice's own (415, 405) and any failure in the
    layers below, is in the one error body."""
    return answer_in_one_body(event, get_response, app.routes)


# Errors on the Polygon-compatible routes, from every layer below, in Polygon's error shape.
app.register_middleware(polygon_error_shape, "http")


@app.middleware("http")
def require_current_schema(event: Any, get_response: Any) -> Any:
    """Once per container: refuse to serve (503) until the schema is at this code's version."""
    # The API document and the pages are static: served even while the database is unavailable.
    if event.path not in ("/health", DOCUMENT_PATH, *PAGE_ROUTES):
        try:
            ensure_schema_current()
        except AppError as exc:
            return error_response(exc)
    return get_response(event)


# After the schema check: key status, scope, IP allow-list, rate limit and the audit row for
# every route behind the API key authorizer.
app.register_middleware(enforce_key_policy, "http")


@app.middleware("all")
def json_logs_in_lambda(event: Any, get_response: Any) -> Any:
    """Every function, on its first invocation in a container (not at import): Lambda's log
    handler writes JSON lines. For the API it runs inside the one error body."""
    configure_logging()
    return get_response(event)


@app.lambda_function(name="migrate")
def migrate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Apply pending migrations; `{"dry_run": true}` lists them instead. A failure raises, so
    the invocation itself fails (and `chalice invoke` exits non-zero) with the runner's message."""
    from chalicelib import jobs  # the runner: only this function's containers load it

    dry_run = bool((event or {}).get("dry_run", False))
    return jobs.migrate(dry_run=dry_run).as_dict()


# Serverless operations (docs/DEPLOYMENT.md). The schedules (UTC), the queue and the worker's
# batch size are the settings Chalice needs to declare the functions, so they are read when the
# app loads (`chalice package` loads it with the stage's variables); nothing else is.
_settings = get_settings()


@app.schedule(_settings.backfill_stocks_schedule, name="backfill_planner")
def backfill_planner(event: CloudWatchEvent) -> dict[str, Any]:
    """After the US close on weekdays: queue the day's backfill of stocks and ETFs."""
    return ops.plan_backfill(event.to_dict(), event.context, market="stocks")


@app.schedule(_settings.backfill_crypto_schedule, name="backfill_planner_crypto")
def backfill_planner_crypto(event: CloudWatchEvent) -> dict[str, Any]:
    """Once the UTC day is over: queue the day's backfill of crypto."""
    return ops.plan_backfill(event.to_dict(), event.context, market="crypto")


@app.on_sqs_message(
    queue=_settings.backfill_queue_name,
    batch_size=_settings.backfill_worker_batch_size,
    maximum_concurrency=_settings.backfill_worker_max_concurrency,
    name="backfill_worker",
)
def backfill_worker(event: SQSEvent) -> dict[str, Any]:
    """Run queued backfills; answers the failed records' ids, so only they are retried."""
    return ops.work_backfill(event.to_dict(), event.context)


@app.schedule(_settings.audit_archive_schedule, name="audit_archiver")
def audit_archiver(event: CloudWatchEvent) -> dict[str, Any]:
    """Daily: move audit rows past the retention to S3, then delete them."""
    return ops.archive_audit(event.to_dict(), event.context)
