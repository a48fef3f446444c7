"""GET /docs, GET /console and their static files: public routes (the pages hold no data; the
console's data calls go through the authorizer like any client's)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.errors import NotFound
from chalicelib.pages.assets import SECURITY_HEADERS, Asset, page, site_asset, vendor_asset
from chalicelib.routing import route

bp = Blueprint(__name__)

TAG = "Pages"

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


@route(
    bp,
    "GET",
    DOCS_PATH,
    summary="The API reference page",
    scope="public",
    tag=TAG,
    uses_database=False,
    listed=False,
)
def docs_page() -> Response:
    return _answer(page("docs.html"))


@route(
    bp,
    "GET",
    CONSOLE_PATH,
    summary="The operator console",
    scope="public",
    tag=TAG,
    uses_database=False,
    listed=False,
)
def console_page() -> Response:
    return _answer(page("console.html"))


@route(
    bp,
    "GET",
    SITE_ASSET_PATH,
    summary="A file of the pages",
    scope="public",
    tag=TAG,
    uses_database=False,
    listed=False,
)
def site_file(name: str) -> Response:
    asset = site_asset(name)
    if asset is None:
        raise NotFound(f"no such file: /static/{name[:100]}")
    return _answer(asset)


@route(
    bp,
    "GET",
    VENDOR_ASSET_PATH,
    summary="A vendored file of the pages",
    scope="public",
    tag=TAG,
    uses_database=False,
    listed=False,
)
def vendor_file(name: str) -> Response:
    asset = vendor_asset(name)
    if asset is None:
        raise NotFound(f"no such file: /static/vendor/{name[:100]}")
    return _answer(asset)
