"""The request middleware for routes behind the API key authorizer.

API Gateway skips the authorizer while it has a token's policy cached, and a TOKEN authorizer
never sees the caller's address, so on every authorized request this re-checks the key's status
(from the in-container cache: no query while it is fresh), its scopes, its IP allow-list and
its rate limit, and writes one audit row.

Cost: one database round trip per request, after the view: the audit INSERT (whose commit does
not wait for the WAL flush), which for a key with a rate limit also counts the key's last
minute in the same statement. No query runs before the view. The rate limit is decided twice:
- in the container, under a lock, from the times of the requests it admitted in the last
  minute, so however many threads race, one container never admits more than the limit in any
  60 seconds;
- across containers, from what the last audit statement counted in PostgreSQL: a container
  only learns of other containers' requests when it writes its own row, so each container can
  let one request beyond the limit through per window (docs: API_KEY_MANAGEMENT.md, "Rate
  limits").
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from chalice import Response
from chalice.app import Request

from chalicelib import db
from chalicelib.errors import AppError, Forbidden, RateLimited, Unauthorized
from chalicelib.http import error_response
from chalicelib.keys import access, repository
from chalicelib.keys.models import EVENT_AUTH_FAILED, KeyStatus, RequestRecord
from chalicelib.ops.observability import log_request

log = logging.getLogger(__name__)

_PATH_PARAMETER = re.compile(r"\{([^/{}]+)\}")
_MAX_PATH = 2048


class RateLimiter:
    """Per key: the times this container admitted its requests in the last window, and until
    when (monotonic) the shared window is full, as the last audit write said."""

    WINDOW_SECONDS = 60.0

    def __init__(self) -> None:
        self._admitted: dict[int, deque[float]] = {}
        self._full_until: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._monotonic = time.monotonic

    def admit(self, key_id: int, limit: int) -> float:
        """Take a slot now and return 0, or return the seconds until one frees (nothing taken).

        Check and take happen under one lock: racing threads cannot both take the last slot.
        """
        with self._lock:
            now = self._monotonic()
            entry = self._full_until.get(key_id)
            # A changed limit starts over: the shared count was measured against the old one.
            if entry is not None and entry[0] == limit and entry[1] > now:
                return entry[1] - now
            admitted = self._admitted.setdefault(key_id, deque())
            while admitted and admitted[0] <= now - self.WINDOW_SECONDS:
                admitted.popleft()
            if len(admitted) >= limit:
                # The oldest admissions free their slots; the limit may have been lowered.
                return admitted[len(admitted) - limit] + self.WINDOW_SECONDS - now
            admitted.append(now)
            return 0.0

    def observe(self, key_id: int, limit: int, *, used: int, seconds_until_slot: float) -> None:
        """Learn the shared window from the audit statement (every container's requests)."""
        with self._lock:
            if used >= limit and seconds_until_slot > 0:
                self._full_until[key_id] = (limit, self._monotonic() + seconds_until_slot)
            else:
                self._full_until.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._admitted.clear()
            self._full_until.clear()


rate_limiter = RateLimiter()


def source_ip_of(event: Request) -> str | None:
    raw = (event.context.get("identity") or {}).get("sourceIp")
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def request_id_of(event: Request) -> str | None:
    # API Gateway's id (also in its x-amzn-RequestId header); the local server has none, so
    # its invocation id stands in.
    request_id = event.context.get("requestId") or getattr(
        event.lambda_context, "aws_request_id", None
    )
    return str(request_id)[:200] if request_id else None


def _path(route: str, uri_params: dict[str, str] | None) -> str:
    """The requested path without the stage prefix: the route with its parameters filled in."""
    params = uri_params or {}
    path = _PATH_PARAMETER.sub(lambda match: params.get(match.group(1), match.group(0)), route)
    # PostgreSQL text cannot hold NUL: a decoded %00 in a parameter must not cost the audit row.
    return path[:_MAX_PATH].replace("\x00", "\ufffd")


# A connection lost while the audit row was being written is replaced and the row written again
# (only if it is not there yet: the first INSERT may have committed before the connection
# died), so a failover or a killed backend does not cost a request its row.
_AUDIT_ATTEMPTS = 3


def _write_audit_row(
    conn: db.Connection,
    record: RequestRecord,
    *,
    event: str | None,
    status: KeyStatus | None,
    again: bool,
) -> None:
    if event == EVENT_AUTH_FAILED:
        refused = msgspec.structs.replace(record, reason=record.reason or access.REASON_DELETED)
        repository.record_request(conn, refused, event=EVENT_AUTH_FAILED, unless_recorded=again)
        return
    limit = status.rate_limit_per_minute if status else None
    if limit is None or record.reason is not None or again:
        # Written again, the row skips the window count: the container's own limiter has
        # already admitted the request, and the next request's statement counts this one.
        repository.record_request(conn, record, unless_recorded=again)
        return
    window = repository.record_request_in_window(conn, record, rate_limit_per_minute=limit)
    rate_limiter.observe(
        record.key_id, limit, used=window.used, seconds_until_slot=window.seconds_until_slot
    )


def _record(
    record: RequestRecord, *, event: str | None = None, status: KeyStatus | None = None
) -> None:
    """Write the request's audit row (and learn the rate window); never fail the request."""
    # The request's JSON log line and its Requests/Latency/AuthFailures metrics.
    log_request(
        method=record.method,
        route=record.route,
        path=record.path,
        status_code=record.status_code,
        latency_ms=record.latency_ms,
        request_id=record.request_id,
        key_id=record.key_id,
        reason=record.reason,
    )
    attempt = 1
    while True:
        try:
            with db.connection() as conn:
                _write_audit_row(conn, record, event=event, status=status, again=attempt > 1)
            return
        except db.ConnectionLost:
            if record.request_id is None or attempt == _AUDIT_ATTEMPTS:
                log.error(
                    "could not write the audit row of request %s: connection lost",
                    record.request_id,
                )
                return
            attempt += 1
            log.info(
                "database connection lost; writing the audit row of request %s again",
                record.request_id,
            )
        except AppError as exc:
            log.error("could not write the audit row of request %s: %s", record.request_id, exc)
            return
        except Exception:
            log.exception("could not write the audit row of request %s", record.request_id)
            return


def enforce_key_policy(event: Request, get_response: Callable[[Request], Response]) -> Any:
    """Key status, scope, IP allow-list and rate limit before the view; the audit row after."""
    authorizer_context = event.context.get("authorizer") or {}
    raw_key_id = authorizer_context.get("key_id")
    if raw_key_id is None:
        return get_response(event)  # a public route: no authorizer ran
    started = time.perf_counter()
    key_id = int(raw_key_id)
    key_prefix = authorizer_context.get("key_prefix")
    route = event.path

    def record(status_code: int, reason: str | None = None) -> RequestRecord:
        return RequestRecord(
            key_id=key_id,
            key_prefix=key_prefix,
            method=event.method,
            route=route,
            path=_path(route, event.uri_params),
            status_code=status_code,
            latency_ms=round((time.perf_counter() - started) * 1000),
            source_ip=source_ip_of(event),
            request_id=request_id_of(event),
            reason=reason,
        )

    try:
        status = access.status_by_id(key_id)
    except AppError as exc:
        return error_response(exc)

    which = access.credential_for(status, key_prefix or "") if status else None
    reason = access.refusal_reason(status, which, access.utc_now())
    if reason is not None or status is None:
        _record(record(401, reason), event=EVENT_AUTH_FAILED)
        return error_response(Unauthorized(f"the API key is not valid ({reason})"))

    if not access.reaches_route(status.scopes, route):
        _record(record(403, access.REASON_SCOPE), status=status)
        return error_response(Forbidden("this API key's scopes do not include this route"))

    source_ip = source_ip_of(event)
    if not access.source_ip_allowed(status.allowed_cidrs, source_ip):
        _record(record(403, access.REASON_SOURCE_IP), status=status)
        return error_response(
            Forbidden(f"this API key may not be used from {source_ip or 'an unknown address'}")
        )

    limit = status.rate_limit_per_minute
    if limit is not None:
        wait = rate_limiter.admit(key_id, limit)
        if wait > 0:
            _record(record(429, access.REASON_RATE_LIMITED), status=status)
            return error_response(
                RateLimited(
                    f"this API key is limited to {limit} requests per minute",
                    retry_after=max(1, math.ceil(wait)),
                )
            )

    status_code = 500
    try:
        response = get_response(event)
        status_code = response.status_code
        return response
    finally:
        _record(record(status_code), status=status)
