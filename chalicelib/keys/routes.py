"""Admin endpoints for API keys: `/api/v1/admin/api-keys…`. No response carries a hash; the
raw key appears only in the create and rotate responses."""

from __future__ import annotations

from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib import db
from chalicelib.http import json_response, parse_id, request_id_of, source_ip_of
from chalicelib.keys import access, service
from chalicelib.keys.models import (
    Actor,
    AuditPageOut,
    AuditQuery,
    CreatedKeyOut,
    CreateKeyRequest,
    KeyList,
    KeyOut,
    ListKeysQuery,
    RotateKeyRequest,
    UpdateKeyRequest,
)
from chalicelib.routing import route

bp = Blueprint(__name__)

KEYS = "/api/v1/admin/api-keys"
KEY = KEYS + "/{key_id}"
TAG = "API keys"
# A response with a raw key must not be kept by a browser, proxy or CDN cache.
NO_STORE = {"Cache-Control": "no-store"}
KEY_PARAMETER = {"key_id": "The key's numeric id (from the list, or the create response)."}


def _request() -> Request:
    request = bp.current_request
    assert request is not None
    return request


def _actor(request: Request) -> Actor:
    context = request.context.get("authorizer") or {}
    who = f"key {context.get('key_id', '?')} ({context.get('key_prefix', '?')})"
    return Actor(who=who, request_id=request_id_of(request), source_ip=source_ip_of(request))


@route(
    bp,
    "POST",
    KEYS,
    summary="Create an API key",
    description="Answers 201 with the raw key in `api_key`: shown once, store it. "
    "`expires_at` must be in the future; `allowed_cidrs` restricts the source addresses "
    "(none: any); `rate_limit_per_minute` caps the key's requests (none: no limit).",
    scope="admin",
    tag=TAG,
    body=CreateKeyRequest,
    response=CreatedKeyOut,
    status=201,
    errors=(400, 409, 413),
)
def create_api_key(*, body: CreateKeyRequest) -> Response:
    actor = _actor(_request())
    created = db.write(
        lambda conn: service.create_key(
            conn,
            name=body.name,
            scopes=list(body.scopes),
            expires_at=body.expires_at,
            allowed_cidrs=body.allowed_cidrs,
            rate_limit_per_minute=body.rate_limit_per_minute,
            actor=actor,
        )
    )
    return json_response(
        CreatedKeyOut.from_created(created, access.utc_now()), status=201, headers=NO_STORE
    )


@route(
    bp,
    "GET",
    KEYS,
    summary="List API keys",
    description="`active_only=true`: only keys that would authenticate now. Usage counters "
    "include requests audited more than a few seconds ago.",
    scope="admin",
    tag=TAG,
    query=ListKeysQuery,
    response=KeyList,
    errors=(400,),
)
def list_api_keys(*, query: ListKeysQuery) -> Response:
    # A read: no lock, no write (usage is read from the audit log), run again on a lost
    # connection.
    keys = db.read(lambda conn: service.list_keys(conn, active_only=query.active_only))
    now = access.utc_now()
    return json_response(
        KeyList(items=[KeyOut.from_key(key, now) for key in keys], count=len(keys))
    )


@route(
    bp,
    "GET",
    KEY,
    summary="Show an API key",
    scope="admin",
    tag=TAG,
    response=KeyOut,
    errors=(400, 404),
    path_parameters=KEY_PARAMETER,
)
def show_api_key(key_id: str) -> Response:
    parsed_id = parse_id(key_id)
    key = db.read(lambda conn: service.get_key(conn, parsed_id))
    return json_response(KeyOut.from_key(key, access.utc_now()))


@route(
    bp,
    "PUT",
    KEY,
    summary="Change, revoke or restore an API key",
    description="Fields that are absent stay as they are; `null` clears `expires_at` or "
    "`rate_limit_per_minute`. `active: false` revokes, `active: true` restores; either is a "
    "no-op (200, unchanged) when the key is already in that state. Restoring an expired key "
    "is refused (409) unless the same request sets a later `expires_at`. Warm containers "
    "notice within `AUTH_CACHE_TTL_SECONDS`.",
    scope="admin",
    tag=TAG,
    body=UpdateKeyRequest,
    response=KeyOut,
    errors=(400, 404, 409, 413),
    path_parameters=KEY_PARAMETER,
)
def update_api_key(key_id: str, *, body: UpdateKeyRequest) -> Response:
    parsed_id = parse_id(key_id)
    actor = _actor(_request())
    key = db.write(lambda conn: service.update_key(conn, parsed_id, body, actor=actor))
    return json_response(KeyOut.from_key(key, access.utc_now()))


@route(
    bp,
    "DELETE",
    KEY,
    summary="Delete an API key for good (its audit history stays)",
    scope="admin",
    tag=TAG,
    status=204,
    errors=(400, 404),
    path_parameters=KEY_PARAMETER,
)
def delete_api_key(key_id: str) -> Response:
    parsed_id = parse_id(key_id)
    actor = _actor(_request())
    db.write(lambda conn: service.delete_key(conn, parsed_id, actor=actor))
    return Response(body="", status_code=204)


@route(
    bp,
    "POST",
    KEY + "/rotate",
    summary="Rotate an API key",
    description="A new raw key (in `api_key`, shown once) for the same key and settings. "
    "The old key keeps working for `grace_seconds` (default 0), never past the key's own "
    "expiry. The body is optional.",
    scope="admin",
    tag=TAG,
    body=RotateKeyRequest,
    body_required=False,  # no body: no grace period
    response=CreatedKeyOut,
    errors=(400, 404, 409, 413),
    path_parameters=KEY_PARAMETER,
)
def rotate_api_key(key_id: str, *, body: RotateKeyRequest) -> Response:
    parsed_id = parse_id(key_id)
    actor = _actor(_request())
    created = db.write(
        lambda conn: service.rotate_key(
            conn, parsed_id, grace_seconds=body.grace_seconds, actor=actor
        )
    )
    return json_response(CreatedKeyOut.from_created(created, access.utc_now()), headers=NO_STORE)


@route(
    bp,
    "GET",
    KEY + "/audit",
    summary="A key's audit log",
    description="Newest first. `since` (inclusive) and `until` (exclusive) are times with a "
    "zone; `status`, `route` (the route pattern, e.g. `/api/v1/symbols`) and `event` filter. "
    "Still available after the key is deleted. Refusals of tokens that match no key belong "
    "to no key, so they are not here: they are counted per minute, display prefix, reason "
    "and source (`attempts`) in the audit log and its archive.",
    scope="admin",
    tag=TAG,
    query=AuditQuery,
    response=AuditPageOut,
    errors=(400, 404),
    path_parameters=KEY_PARAMETER,
)
def api_key_audit(key_id: str, *, query: AuditQuery) -> Response:
    parsed_id = parse_id(key_id)
    page = db.read(lambda conn: service.audit_page(conn, parsed_id, query))
    return json_response(
        AuditPageOut(key_id=page.key_id, items=page.items, next_cursor=page.next_cursor)
    )
