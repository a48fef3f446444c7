"""Structured logs and metrics: one JSON line per event on stdout, and CloudWatch metrics in the
Embedded Metric Format (EMF), which CloudWatch Logs turns into metrics with no API call.

Standard library only. aws-lambda-powertools offers the same, but costs the API's cold start more
than this whole module (docs/PERFORMANCE.md, "Observability"). A metric rides on the log line of
the event it measures, so a request is one line, not one line per metric.

Lines carry the request id and the key id when they are known, never the key itself; fields whose
names look like credentials are masked before anything is written.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from chalicelib import container
from chalicelib.config import get_settings

COUNT = "Count"
MILLISECONDS = "Milliseconds"

# The one dimension every metric carries: the function's deployed name is unique per stack and
# stage, and the alarms in deploy/resources.json select on it with `Ref`.
DIMENSION = "Function"
LOCAL_FUNCTION = "local"

_SENSITIVE_PARTS = ("authorization", "password", "secret", "token", "api_key", "raw_key")
MASK = "[masked]"

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "mdw_log_context", default=MappingProxyType({})
)
_write_lock = threading.Lock()


def write_records_with(sink: Callable[[Mapping[str, Any]], None] | None) -> None:
    """Send every record to `sink` instead of stdout as JSON; None restores JSON lines. Lambda
    (and anything that sets nothing) gets JSON lines on stdout; the local server renders them
    for a person instead (`make run --log-format human`)."""
    container.current.log_sink = sink


def function_name() -> str:
    return get_settings().function_name or LOCAL_FUNCTION


def _is_sensitive(field: str) -> bool:
    lowered = field.lower()
    return any(part in lowered for part in _SENSITIVE_PARTS)


def _clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: MASK if _is_sensitive(name) else value
        for name, value in fields.items()
        if value is not None
    }


def _write(record: Mapping[str, Any]) -> None:
    sink = container.current.log_sink
    if sink is not None:
        sink(record)
        return
    line = json.dumps(record, default=str, separators=(",", ":"))
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields (request_id, key_id, ...) to every line written inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def log_event(
    event: str,
    *,
    level: str = "info",
    metrics: Mapping[str, tuple[float, str]] | None = None,
    **fields: Any,
) -> None:
    """Write one JSON line for `event`; `metrics` ({name: (value, unit)}) ride on it as EMF."""
    record: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "event": event,
        "function": function_name(),
    }
    record.update(_clean(_context.get()))
    record.update(_clean(fields))
    if metrics:
        record[DIMENSION] = function_name()
        record["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": get_settings().metrics_namespace,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": [
                        {"Name": name, "Unit": unit} for name, (_, unit) in metrics.items()
                    ],
                }
            ],
        }
        for name, (value, _) in metrics.items():
            record[name] = value
    _write(record)


def emit_metric(name: str, value: float, *, unit: str = COUNT, **fields: Any) -> None:
    """One metric as its own line (for a value with no event of its own to ride on)."""
    log_event("metric", metrics={name: (value, unit)}, **fields)


def log_request(
    *,
    method: str,
    route: str | None,
    path: str,
    status_code: int,
    latency_ms: float,
    request_id: str | None,
    key_id: int | str | None,
    reason: str | None = None,
) -> None:
    """The API's per-request line, with the Requests, Latency and AuthFailures metrics.

    AuthFailures counts the middleware's refusals (401/403: revoked or expired key, address not
    allowed, wrong scope); it is written as 0 on other requests so its alarm always has data.
    """
    auth_failure = 1 if status_code in (401, 403) else 0
    log_event(
        "request",
        level="warning" if status_code >= 500 or auth_failure else "info",
        metrics={
            "Requests": (1, COUNT),
            "Latency": (round(latency_ms, 3), MILLISECONDS),
            "AuthFailures": (auth_failure, COUNT),
        },
        method=method,
        route=route,
        path=path,
        status_code=status_code,
        latency_ms=round(latency_ms, 3),
        request_id=request_id,
        key_id=str(key_id) if key_id is not None else None,
        reason=reason,
    )


class JsonFormatter(logging.Formatter):
    """Renders `logging` records (library and `log.exception` output) as the same JSON lines,
    with the traceback inside the line instead of spread over many."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": "log",
            "function": function_name(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_clean(_context.get()))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, separators=(",", ":"))


def configure_logging() -> None:
    """In Lambda, make the runtime's log handler write JSON lines; elsewhere leave logging as
    it is (a terminal reads better as text). Once per container: later calls cost a flag."""
    state = container.current
    if state.logging_configured:
        return
    if get_settings().in_lambda:
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        if not root.handlers:
            root.addHandler(logging.StreamHandler(sys.stdout))
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    state.logging_configured = True
