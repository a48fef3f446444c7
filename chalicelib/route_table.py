"""Every API route and its methods, generated from app.py by
`python -m devtools.gen_route_table`; a test fails when it is stale.

The authorizer's Lambda container imports only the authorizer, never app.py (where the routes are
declared), so its policies are built from this table.
"""

from __future__ import annotations

ROUTES: dict[str, tuple[str, ...]] = {
    "/api/v1/admin/api-keys": ("GET", "POST"),
    "/api/v1/admin/api-keys/{key_id}": ("DELETE", "GET", "PUT"),
    "/api/v1/admin/api-keys/{key_id}/audit": ("GET",),
    "/api/v1/admin/api-keys/{key_id}/rotate": ("POST",),
    "/api/v1/admin/symbols": ("GET", "POST"),
    "/api/v1/admin/symbols/{symbol}": ("DELETE", "GET", "PUT"),
    "/api/v1/admin/symbols/{symbol}/backfill": ("POST",),
    "/api/v1/bars": ("GET",),
    "/api/v1/historical/{symbol}": ("GET",),
    "/api/v1/latest": ("GET",),
    "/api/v1/status": ("GET",),
    "/api/v1/symbols": ("GET",),
    "/api/v1/symbols/{symbol}": ("GET",),
    "/console": ("GET",),
    "/docs": ("GET",),
    "/health": ("GET",),
    "/openapi.json": ("GET",),
    "/static/vendor/{name}": ("GET",),
    "/static/{name}": ("GET",),
    "/v2/aggs/grouped/locale/global/market/crypto/{date}": ("GET",),
    "/v2/aggs/grouped/locale/us/market/stocks/{date}": ("GET",),
    "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}": ("GET",),
    "/v3/reference/splits": ("GET",),
}
