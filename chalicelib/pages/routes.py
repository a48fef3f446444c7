"""GET /docs, GET /console and their static files: public routes (the pages hold no data; the
console's data calls go through the authorizer like any client's)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.errors import NotFound
from chalicelib.http import json_view
from chalicelib.openapi import declare_unlisted
from chalicelib.pages.assets import SECURITY_HEADERS, Asset, page, site_asset, vendor_asset

bp = Blueprint(__name__)

DOCS_PATH = "/docs"
CONSOLE_PATH = "/console"
SITE_ASSET_PATH = "/static/{name}"
VENDOR_ASSET_PATH = "/static/vendor/{name}"
# Served without the database: the schema check in app.py lets these through.
PAGE_ROUTES = (DOCS_PATH, CONSOLE_PATH, SITE_ASSET_PATH, VENDOR_ASSET_PATH)


def _answer(asset: Asset) -> Response:
    headers: dict[str, str | list[str]] = {
        **SECURITY_HEADERS,
        "Cache-Control": asset.cache_control,
        "ETag": asset.etag,
    }
    # Chalice's request headers are case-insensitive.
    if_none_match: str = bp.current_request.headers.get("if-none-match") or ""
    if asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(body="", status_code=304, headers=headers)
    return Response(
        body=asset.body, status_code=200, headers={**headers, "Content-Type": asset.content_type}
    )


@bp.route(DOCS_PATH, methods=["GET"])
@json_view
def docs_page() -> Response:
    return _answer(page("docs.html"))


@bp.route(CONSOLE_PATH, methods=["GET"])
@json_view
def console_page() -> Response:
    return _answer(page("console.html"))


@bp.route(SITE_ASSET_PATH, methods=["GET"])
@json_view
def site_file(name: str) -> Response:
    asset = site_asset(name)
    if asset is None:
        raise NotFound(f"no such file: /static/{name[:100]}")
    return _answer(asset)


@bp.route(VENDOR_ASSET_PATH, methods=["GET"])
@json_view
def vendor_file(name: str) -> Response:
    asset = vendor_asset(name)
    if asset is None:
        raise NotFound(f"no such file: /static/vendor/{name[:100]}")
    return _answer(asset)


for _path in PAGE_ROUTES:
    declare_unlisted("GET", _path)
