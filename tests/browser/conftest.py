"""Headless Chromium (Debian's `chromium`, driven by Playwright for Python through its path: no
browser is downloaded) against `make run`'s launcher on a fresh data directory, so the pages
see the simulator's data as a reader's `make run` shows it.

Without chromium or Playwright the tests are skipped with one line saying so; with
`MDW_REQUIRE_BROWSER=1` (CI) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import PROJECT_ROOT
from tests.test_launcher import Launch, launcher_env

CHROMIUM = os.environ.get("MDW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
# The key cache of the server under test: a revoked key is refused within this many seconds.
AUTH_CACHE_TTL_SECONDS = 2


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"browser tests skipped: no chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: Playwright for Python is not installed (make install)"
    return None


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get("MDW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; MDW_REQUIRE_BROWSER=1 requires them", pytrace=False)
    pytest.skip(reason)


@dataclass
class Api:
    """Plain HTTP calls to the server under test, as any client makes them."""

    url: str

    def call(self, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None


@dataclass
class Server:
    url: str
    admin_key: str
    data_dir: Path
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.url)

    def sql(self, statement: str, *params: Any) -> None:
        """Run one statement in the server's embedded database, from a process of its own that
        joins it as the `mdw` commands beside `make run` do."""
        script = (
            "import json, sys\n"
            "from pathlib import Path\n"
            "from chalicelib import db\n"
            "import psycopg\n"
            "statement, params = json.loads(sys.stdin.read())\n"
            "with psycopg.connect(db.embedded_server_url(Path(sys.argv[1]))) as conn:\n"
            "    conn.execute(statement, params)\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(self.data_dir)],
            input=json.dumps([statement, list(params)]),
            text=True,
            check=True,
            cwd=PROJECT_ROOT,
            timeout=60,
        )

    def make_key(self, name: str, scopes: list[str]) -> tuple[int, str]:
        status, body = self.api.call(
            "POST", "/api/v1/admin/api-keys", self.admin_key, {"name": name, "scopes": scopes}
        )
        assert status == 201, body
        return body["id"], body["api_key"]


@pytest.fixture(scope="session")
def server(browser_available: None) -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="mdw-browser-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir()
    env = launcher_env(data_dir)
    env["AUTH_CACHE_TTL_SECONDS"] = str(AUTH_CACHE_TTL_SECONDS)
    launch = Launch(data_dir, plan_every=5, env=env)
    try:
        launch.wait_until_serving()
        yield Server(launch.url, launch.admin_key(), data_dir)
        launch.stop(15)
    finally:
        launch.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def browser(browser_available: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        yield launched
        launched.close()


# A refused request is logged by the browser as a failed resource load; the tests provoke
# those on purpose (a revoked key, a read key at an admin route). Anything else is a failure:
# a JavaScript error, a CSP violation, a failed script or style.
_EXPECTED_LOAD_FAILURE = "Failed to load resource: the server responded with a status of 4"


@dataclass
class Tab:
    page: Any
    errors: list[str]


@pytest.fixture
def tab(browser: Any, server: Server) -> Iterator[Tab]:
    """A fresh browser context (its own sessionStorage) at 1280×800; no JavaScript error, CSP
    violation or dialog may happen in it."""
    context = browser.new_context(viewport=VIEWPORT, base_url=server.url)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not (
            message.text.startswith(_EXPECTED_LOAD_FAILURE)
            and "/api/v1/" in message.location.get("url", "")
        ):
            errors.append(f"console error: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    # An alert() would be injected script running.
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield Tab(page, errors)
    context.close()
    assert errors == []


def screenshot(tab: Tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
