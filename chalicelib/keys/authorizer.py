"""The custom authorizer: `Authorization: Bearer mdw_…` → a policy for the key's scopes.

API Gateway caches one policy per token for every route, so the policy lists every route the
key's scopes reach, not only the one requested. Keys with `admin` reach everything; `read` keys
reach every route outside `/api/v1/admin/`, so a `read` key on an admin route gets API
Gateway's (or the local server's) 403. A malformed token is refused without touching the
database; a well-formed one that fails is refused and recorded in the audit log.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from chalice import AuthResponse, Blueprint
from chalice.app import AuthRequest, AuthRoute

from chalicelib import db
from chalicelib.errors import AppError
from chalicelib.keys import access, repository, tokens
from chalicelib.ops.observability import configure_logging
from chalicelib.route_table import ROUTES

log = logging.getLogger(__name__)

bp = Blueprint(__name__)

ADMIN_PREFIX = access.ADMIN_PREFIX
POLICY_TTL_SECONDS = 300
_PATH_PARAMETER = re.compile(r"\{[^/]+\}")
_PARSEABLE_PREFIX = re.compile(
    "^"
    + re.escape(tokens.PREFIX)
    + f"[0-9A-Za-z]{{{tokens.DISPLAY_PREFIX_LENGTH - len(tokens.PREFIX)}}}"
)


def _deny() -> Exception:
    # API Gateway turns Exception("Unauthorized") into 401. Chalice's local server needs its
    # own NotAuthorizedError for the same answer; that module ships only with the full chalice
    # package, never in the Lambda zip.
    try:
        from chalice.local import NotAuthorizedError
    except ImportError:
        return Exception("Unauthorized")
    return NotAuthorizedError(
        {"x-amzn-ErrorType": "UnauthorizedException"}, b'{"message":"Unauthorized"}'
    )


UNAVAILABLE_MESSAGE = "the API key could not be checked right now; retry shortly"
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


def _unavailable() -> Exception:
    # Any other exception than "Unauthorized" is API Gateway's AUTHORIZER_FAILURE, which the
    # template's gateway response answers with 503 in the one error body. Refusing with 401
    # would hide an outage behind a "bad key". The local server answers an
    # InvalidAuthorizerError with its status, headers and body: the same 503 here.
    try:
        from chalice.local import InvalidAuthorizerError
    except ImportError:
        return RuntimeError("authorizer could not reach the database")

    class AuthorizerUnavailable(InvalidAuthorizerError):
        CODE = 503

    body = {"error": {"code": "service_unavailable", "message": UNAVAILABLE_MESSAGE}}
    return AuthorizerUnavailable(
        {
            "Content-Type": "application/json",
            "Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS),
        },
        json.dumps(body).encode(),
    )


def bearer_token(header: str | None) -> str | None:
    """The token of `Bearer <token>` (scheme case-insensitive), or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def parseable_prefix(token: str) -> str | None:
    """The display prefix of something shaped like a key, to tell attempts apart in logs and
    the audit log; never more of the token than a display prefix."""
    match = _PARSEABLE_PREFIX.match(token)
    return match.group(0) if match else None


def policy_route(path: str) -> str:
    """A route as a policy resource: path parameters match any one value."""
    return _PATH_PARAMETER.sub("*", path)


def routes_for_scopes(scopes: list[str], all_routes: list[str]) -> list[str | AuthRoute]:
    """Every route these scopes reach, as policy resources (all methods)."""
    reachable = {policy_route(path) for path in all_routes if access.reaches_route(scopes, path)}
    return list(sorted(reachable))


def _method_and_path(method_arn: str) -> tuple[str | None, str | None]:
    """`arn:aws:execute-api:region:account:api/stage/GET/a/b` → ("GET", "/a/b")."""
    if not method_arn.startswith("arn:") or method_arn.count(":") < 5:
        return None, None
    resource = method_arn.split(":", 5)[-1]
    parts = resource.split("/", 3)
    if len(parts) < 3:
        return None, None
    return parts[2], "/" + (parts[3] if len(parts) > 3 else "")


def _record_failure(
    auth_request: AuthRequest, *, reason: str, key_prefix: str, key_id: int | None
) -> None:
    method, path = _method_and_path(auth_request.method_arn or "")
    log.info("API key refused: %s (key %s, %s %s)", reason, key_prefix, method or "-", path or "-")
    try:
        with db.connection() as conn:
            if key_id is None:
                # No key has this hash: counted in its minute's row, so a flood of made-up keys
                # cannot grow the audit log by one row per attempt.
                repository.record_unknown_key_refusal(
                    conn,
                    key_prefix=key_prefix,
                    reason=reason,
                    method=method,
                    path=path,
                    prefixes_per_minute=access.REFUSAL_PREFIXES_PER_MINUTE,
                )
            else:
                repository.record_refusal(
                    conn,
                    key_id=key_id,
                    key_prefix=key_prefix,
                    reason=reason,
                    method=method,
                    route=None,
                    path=path,
                )
    except (AppError, psycopg.Error) as exc:
        # The refusal stands either way; only its audit row is lost, and the log says so.
        log.error("could not record a refused API key in the audit log: %s", type(exc).__name__)


def _auth_request_of(event: Mapping[str, Any]) -> AuthRequest:
    """API Gateway's TOKEN event as an AuthRequest. Chalice's own conversion raises KeyError on
    an event that lacks a field; here a missing field is empty, and refused like a request
    without a usable token."""
    return AuthRequest(
        str(event.get("type") or ""),
        str(event.get("authorizationToken") or ""),
        str(event.get("methodArn") or ""),
    )


def _credential(key_hash: bytes, key_prefix: str) -> access.Credential | None:
    """The token's key from the cache, or (on a miss) one query on a connection of ours."""
    found, credential = access.cached_credential(key_hash, key_prefix)
    if found:
        return credential
    with db.connection() as conn:
        return access.load_credential(conn, key_hash, key_prefix)


@bp.authorizer(ttl_seconds=POLICY_TTL_SECONDS)
def api_key_authorizer(auth_request: AuthRequest) -> AuthResponse:
    # In Lambda this module is the authorizer container's entry point: app.py's middleware,
    # which sets up JSON logs for the other functions, never runs here.
    configure_logging()
    if _method_and_path(auth_request.method_arn or "")[1] is None:
        # No policy can be built for an event without a method ARN: not API Gateway's event.
        log.error("authorizer event without a usable methodArn; refused")
        raise _deny()
    token = bearer_token(auth_request.token)
    if token is None:
        log.info("API key refused: no bearer token")
        raise _deny()
    if not tokens.is_well_formed(token):
        # No database work for tokens that cannot be keys: a flood of garbage costs nothing
        # but this log line.
        log.info("API key refused: malformed (prefix %s)", parseable_prefix(token) or "-")
        raise _deny()
    key_prefix = tokens.display_prefix(token)
    try:
        credential = _credential(tokens.hash_key(token), key_prefix)
    except AppError as exc:
        log.error("authorizer could not check a key: %s", exc.message)
        raise _unavailable() from None
    if credential is None:
        _record_failure(
            auth_request, reason=access.REASON_UNKNOWN, key_prefix=key_prefix, key_id=None
        )
        raise _deny()
    status = credential.status
    reason = access.refusal_reason(status, credential.which, access.utc_now())
    if reason is not None:
        _record_failure(auth_request, reason=reason, key_prefix=key_prefix, key_id=status.id)
        raise _deny()
    # API Gateway turns context values into strings; the local server passes them as they
    # are. Strings from the start make both the same.
    return AuthResponse(
        routes=routes_for_scopes(status.scopes, list(ROUTES)),
        principal_id=str(status.id),
        context={
            "key_id": str(status.id),
            "key_prefix": key_prefix,
            "credential": str(credential.which),
            "scopes": ",".join(status.scopes),
        },
    )


# The authorizer object Lambda calls (its Handler) converts the event with this, not Chalice's
# strict conversion.
setattr(api_key_authorizer, "_transform_event", _auth_request_of)  # noqa: B010
