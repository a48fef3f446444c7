"""The console's first load: what a browser with an empty cache downloads, and how long until
the overview grid is on screen.

`make run`'s launcher on a fresh data directory (the simulator's core symbols backfilled), then
headless Chromium (Debian's, through Playwright) opens `/console` in a new context (empty
cache), signs in with the admin key and waits for the overview grid; five times, p50. Every
response body of the load is counted as sent (`make run`) and as API Gateway sends it to a
browser that accepts gzip (bodies of 1 KB and more compressed, `MinimumCompressionSize`
in deploy/resources.json), gzip level 6. The API reference's first load is measured the same
way for comparison.

Target: the console's first load at most 300 KB gzip, chart library included.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_GZIP_BYTES = 300 * 1024
COMPRESSION_MIN_BYTES = 1024
RUNS = 5
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Load:
    seconds: float
    requests: int
    raw_bytes: int
    gzip_bytes: int
    largest: list[tuple[str, int]]


def _as_gateway_sends(body: bytes) -> int:
    if len(body) < COMPRESSION_MIN_BYTES:
        return len(body)
    return len(gzip.compress(body, compresslevel=6))


def _load(browser: Any, url: str, path: str, *, admin_key: str | None) -> Load:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    bodies: list[tuple[str, bytes]] = []

    def finished(request: Any) -> None:
        bodies.append((request.url, request.response().body()))

    page.on("requestfinished", finished)
    started = time.perf_counter()
    page.goto(url + path)
    if admin_key is None:
        page.wait_for_selector("body[data-docs-ready]")
    else:
        page.fill("#key-input", admin_key)
        page.click("#signin-button")
        page.wait_for_selector("#overview-grid td[data-status]")
    elapsed = time.perf_counter() - started
    context.close()
    sizes = [(name.removeprefix(url), len(body), _as_gateway_sends(body)) for name, body in bodies]
    return Load(
        seconds=elapsed,
        requests=len(sizes),
        raw_bytes=sum(raw for _, raw, _ in sizes),
        gzip_bytes=sum(sent for _, _, sent in sizes),
        largest=sorted(((name, sent) for name, _, sent in sizes), key=lambda x: -x[1])[:4],
    )


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def run() -> str:
    if not Path(CHROMIUM).exists():
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        return f"## Console first load\n\nNot run: {missing}."
    from playwright.sync_api import sync_playwright

    from tests.test_launcher import Launch, launcher_env

    root = Path(tempfile.mkdtemp(prefix="mdw-bench-console-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir()
    launch = Launch(data_dir, plan_every=5, env=launcher_env(data_dir))
    try:
        launch.wait_until_serving()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            console = [
                _load(browser, launch.url, "/console", admin_key=launch.admin_key())
                for _ in range(RUNS)
            ]
            docs = [_load(browser, launch.url, "/docs", admin_key=None) for _ in range(RUNS)]
            browser.close()
        launch.stop(15)
    finally:
        launch.kill()
        shutil.rmtree(root, ignore_errors=True)

    first = console[0]
    grid_p50 = statistics.median(load.seconds for load in console)
    docs_p50 = statistics.median(load.seconds for load in docs)
    verdict = "met" if first.gzip_bytes <= TARGET_GZIP_BYTES else "NOT met"
    largest = ", ".join(f"`{name.split('?')[0]}` {_kb(size)}" for name, size in first.largest)
    return "\n".join(
        [
            "## Console first load (`python -m bench console`)",
            "",
            "`make run` with the simulator's core symbols; headless Chromium with an empty cache "
            f"opens the page (for `/console`: signs in with the admin key and waits for the "
            f"overview grid), p50 of {RUNS} loads. Bytes are the response bodies of one load, "
            "as sent by `make run` and as API Gateway sends them to a browser that accepts gzip "
            f"(bodies of {COMPRESSION_MIN_BYTES} bytes and more, gzip level 6).",
            "",
            "| page | requests | bytes as sent | bytes gzip | target | time to ready (p50) |",
            "|---|---|---|---|---|---|",
            f"| `/console` to the overview grid | {first.requests} | {_kb(first.raw_bytes)} "
            f"| {_kb(first.gzip_bytes)} | ≤ {_kb(TARGET_GZIP_BYTES)}: {verdict} "
            f"| {grid_p50 * 1000:.0f} ms |",
            f"| `/docs` rendered (for comparison) | {docs[0].requests} | "
            f"{_kb(docs[0].raw_bytes)} | {_kb(docs[0].gzip_bytes)} | | {docs_p50 * 1000:.0f} ms |",
            "",
            f"Largest in the console's load (gzip): {largest}.",
        ]
    )
