"""What the Lambda functions in app.py call: event in, plain result out. Modules are imported
inside each function so `import app` (every API cold start) loads none of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.config import get_settings
from chalicelib.ops.observability import bound, log_event


def _request_id(context: Any) -> str | None:
    return getattr(context, "aws_request_id", None)


def _as_of(event: dict[str, Any]) -> datetime | None:
    """An operator may re-plan a past moment with `{"detail": {"as_of": "<ISO time>"}}`."""
    detail = event.get("detail")
    raw = detail.get("as_of") if isinstance(detail, dict) else None
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def plan_backfill(event: dict[str, Any], context: Any, *, market: str) -> dict[str, Any]:
    from chalicelib.ops import planner

    with bound(request_id=_request_id(context)):
        reports = planner.run_plan([market], now=_as_of(event))  # type: ignore[list-item]
    return {"plans": [report.as_dict() for report in reports]}


def work_backfill(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from chalicelib.ops import worker

    answer: dict[str, Any] = worker.handle_batch(
        event.get("Records", []), request_id=_request_id(context)
    )
    return answer


def archive_audit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from chalicelib.ops import archive

    with bound(request_id=_request_id(context)):
        # Only a real Lambda has a deadline (the local and test contexts pretend 3 s).
        in_lambda = get_settings().in_lambda
        report = archive.run_archive(
            remaining_ms=getattr(context, "get_remaining_time_in_millis", None)
            if in_lambda
            else None
        )
        log_event("audit.archived", **report.as_dict())
    summary: dict[str, Any] = report.as_dict()
    return summary
