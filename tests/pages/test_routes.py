"""The pages and their files: public, served without the database, under the security headers,
revalidated by ETag; an unknown file is a 404 in the one error body."""

from __future__ import annotations

import hashlib
import re

import pytest
from chalice.test import Client

from app import app
from chalicelib.openapi import build_document, undeclared_routes, unlisted_routes
from chalicelib.pages.assets import STATIC_DIR, VENDOR_DIR
from chalicelib.pages.routes import PAGE_ROUTES

PAGES = ["/docs", "/console"]
FILES = ["/static/docs.js", "/static/console.js", "/static/console.css"]
VENDORED = ["/static/vendor/swagger-ui-bundle.js", "/static/vendor/lightweight-charts.js"]


@pytest.fixture(scope="module")
def http():
    # No database behind it: the pages must not need one.
    with Client(app, stage_name="local") as client:
        yield client.http


def header(response, name: str) -> str:
    return {k.lower(): v for k, v in response.headers.items()}[name.lower()]


@pytest.mark.parametrize("path", PAGES + FILES + VENDORED)
def test_pages_and_files_are_public_and_carry_the_security_headers(http, path):
    response = http.get(path)

    assert response.status_code == 200
    csp = header(response, "Content-Security-Policy")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert header(response, "Referrer-Policy") == "no-referrer"


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("/docs", "text/html; charset=utf-8", "no-cache"),
        ("/console", "text/html; charset=utf-8", "no-cache"),
        ("/static/console.js", "text/javascript; charset=utf-8", "public, max-age=3600"),
        ("/static/console.css", "text/css; charset=utf-8", "public, max-age=3600"),
        ("/static/vendor/VERSIONS.md", "text/plain; charset=utf-8", "public, max-age=3600"),
    ],
)
def test_content_type_and_caching(http, path, content_type, cache):
    response = http.get(path)

    assert header(response, "Content-Type") == content_type
    assert header(response, "Cache-Control") == cache


def test_a_file_is_served_as_it_is_on_disk_with_its_hash_as_etag(http):
    response = http.get("/static/vendor/lightweight-charts.js")
    on_disk = (VENDOR_DIR / "lightweight-charts.js").read_bytes()

    assert response.body == on_disk
    assert header(response, "ETag") == '"' + hashlib.sha256(on_disk).hexdigest()[:32] + '"'


def test_a_known_etag_is_answered_304_without_a_body(http):
    etag = header(http.get("/static/console.js"), "ETag")

    again = http.get("/static/console.js", headers={"If-None-Match": f'"other", {etag}'})

    assert again.status_code == 304
    assert again.body == b""
    assert header(again, "Content-Security-Policy")


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.js",
        "/static/docs.html",  # pages only by their own routes
        "/static/vendor/none.css",
        "/static/vendor/..%2Fconsole.js",
        "/static/vendor/VERSIONS.MD",
    ],
)
def test_anything_else_is_a_404_in_the_one_error_body(http, path):
    response = http.get(path)

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"


def test_the_pages_reference_only_files_that_are_served(http):
    for page in ("docs.html", "console.html"):
        html = (STATIC_DIR / page).read_text()
        references = re.findall(r'(?:src|href)="(static/[^"]+)"', html)
        assert references, page
        for reference in references:
            assert http.get("/" + reference).status_code == 200, (page, reference)


def test_no_page_holds_inline_script_or_style(http):
    for page in ("docs.html", "console.html"):
        html = (STATIC_DIR / page).read_text()
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], page
        assert "<style" not in html, page
        assert " style=" not in html, page
        assert re.search(r"\son\w+=", html) is None, page


def test_every_vendored_file_is_listed_with_its_hash():
    listed = {}
    for line in (VENDOR_DIR / "VERSIONS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and len(cells[4]) == 64:
            listed[cells[3]] = cells[4]
    on_disk = {p.name for p in VENDOR_DIR.iterdir() if p.name != "VERSIONS.md"}

    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_pages_are_served_but_not_in_the_api_document():
    document = build_document(app.routes)

    assert {("GET", path) for path in PAGE_ROUTES} == set(unlisted_routes(app.routes))
    assert undeclared_routes(app.routes) == []
    assert not set(PAGE_ROUTES) & set(document["paths"])
