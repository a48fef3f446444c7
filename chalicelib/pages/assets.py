"""The pages' static files: read once per container from `static/`, each with its content type,
validator (ETag) and caching rule. What may be served is exactly what is on disk there, by a
name the routes pass in; a name never reaches the file system as a path."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}

# The pages hold no data and load nothing from elsewhere: scripts, styles and fetches come only
# from this origin; no inline script, no eval, no framing. Images are this origin's or data:
# URIs (the renderer's icons).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Pages are revalidated on every load (a deploy shows at once); scripts and styles are kept an
# hour and revalidated by ETag after that.
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=3600"


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    etag: str
    cache_control: str


_lock = threading.Lock()
_loaded: dict[Path, Asset] = {}


def _read(path: Path, cache_control: str) -> Asset:
    data = path.read_bytes()
    return Asset(
        body=data.decode("utf-8"),
        content_type=CONTENT_TYPES[path.suffix],
        etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"',
        cache_control=cache_control,
    )


def _names(folder: Path) -> frozenset[str]:
    return frozenset(p.name for p in folder.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES)


SITE_NAMES = _names(STATIC_DIR)
VENDOR_NAMES = _names(VENDOR_DIR)


def _get(folder: Path, names: frozenset[str], name: str, cache_control: str) -> Asset | None:
    if name not in names:
        return None
    path = folder / name
    with _lock:
        asset = _loaded.get(path)
        if asset is None:
            asset = _loaded[path] = _read(path, cache_control)
    return asset


def page(name: str) -> Asset:
    """One of the HTML pages (`docs.html`, `console.html`)."""
    asset = _get(STATIC_DIR, SITE_NAMES, name, PAGE_CACHE)
    assert asset is not None, f"{name} is not in {STATIC_DIR}"
    return asset


def site_asset(name: str) -> Asset | None:
    """A script or style of the pages' own, or None."""
    if name.endswith(".html"):
        return None  # pages have their own routes
    return _get(STATIC_DIR, SITE_NAMES, name, ASSET_CACHE)


def vendor_asset(name: str) -> Asset | None:
    """A vendored file (chalicelib/pages/static/vendor/VERSIONS.md), or None."""
    return _get(VENDOR_DIR, VENDOR_NAMES, name, ASSET_CACHE)
