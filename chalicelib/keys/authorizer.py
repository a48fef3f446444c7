"""The custom authorizer: `Authorization: Bearer mdw_…` → a policy for the key's scopes.

API Gateway caches one policy per token for every route, so the policy lists every route the
key's scopes reach, not only the one requested. Keys with `admin` reach everything; `read` keys
reach every route outside `/api/v1/admin/`.
"""

from __future__ import annotations

from chalice import AuthResponse, Blueprint
from chalice.app import AuthRequest

from chalicelib import db
from chalicelib.keys import repository, tokens

bp = Blueprint(__name__)

ADMIN_PREFIX = "/api/v1/admin/"


class _Unauthorized(Exception):
    pass


def _deny() -> Exception:
    # API Gateway turns Exception("Unauthorized") into 401. Chalice's local server needs its
    # own NotAuthorizedError for the same answer; that module ships only with the full chalice
    # package, never in the Lambda zip.
    try:
        from chalice.local import NotAuthorizedError
    except ImportError:
        return Exception("Unauthorized")
    return NotAuthorizedError("Unauthorized")


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def routes_for_scopes(scopes: list[str], all_routes: list[str]) -> list[str]:
    if "admin" in scopes:
        return sorted(all_routes)
    return sorted(path for path in all_routes if not path.startswith(ADMIN_PREFIX))


@bp.authorizer(ttl_seconds=300)
def api_key_authorizer(auth_request: AuthRequest) -> AuthResponse:
    token = bearer_token(auth_request.token)
    if token is None or not tokens.is_well_formed(token):
        raise _deny()
    with db.connection() as conn:
        key = repository.get_key_by_hash(conn, tokens.hash_key(token))
    if key is None or not key.active:
        raise _deny()
    all_routes = list(bp.current_app.routes)
    return AuthResponse(
        routes=routes_for_scopes(key.scopes, all_routes),
        principal_id=str(key.id),
        context={"key_id": str(key.id), "scopes": ",".join(key.scopes)},
    )
