"""/docs and /console in headless Chromium against `make run` with the simulator's data: the
reference lists every operation; the console signs in with a read and an admin key, shows the
overview, draws a symbol's candles with its flagged bars, manages keys (create, use, revoke,
restore, rotate, delete), pages an audit log holding markup, adds and backfills a symbol. No
JavaScript error, CSP violation or script from the data happens in any of it (see `tab`)."""

from __future__ import annotations

import http.client
import time
from typing import Any

from tests.browser.conftest import AUTH_CACHE_TTL_SECONDS, Server, Tab, screenshot

FLAG_COLOR = (0xD8, 0x1B, 0x60)  # console.js FLAG_COLOR
# A path as a client sends it (markup, no spaces or slashes), and one as API Gateway records it
# decoded, with control characters.
SENT_PATH = "/api/v1/historical/<script>alert(2)<script>"
DECODED_PATH = (
    '/api/v1/historical/<img src=x onerror="alert(1)"><script>alert(3)</script>\u202e\u0007'
)


def wait_until(page: Any, predicate: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript function until it returns true. (Playwright's wait_for_function
    evaluates its predicate with eval, which the pages' CSP rightly refuses.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"never true: {predicate}"
        time.sleep(0.1)


def sign_in(tab: Tab, key: str, *, expect: str) -> None:
    page = tab.page
    page.goto("/console")
    page.fill("#key-input", key)
    page.click("#signin-button")
    page.wait_for_selector(f"body[data-signed-in={expect}]")


def document_operations(server: Server) -> dict[tuple[str, str], dict[str, Any]]:
    status, document = server.api.call("GET", "/openapi.json", None)
    assert status == 200
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


# --- /docs -------------------------------------------------------------------------------------


def test_the_reference_shows_every_operation_schema_and_error(tab: Tab, server: Server) -> None:
    page = tab.page
    page.goto("/docs")
    page.wait_for_selector("body[data-docs-ready]")
    operations = document_operations(server)
    _, document = server.api.call("GET", "/openapi.json", None)

    shown = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in page.locator(".opblock").all()
    }
    assert shown == set(operations)

    # OpenAPI 3.1 schemas are rendered by Swagger UI's JSON Schema 2020-12 plugin.
    schemas = {
        title.inner_text().strip()
        for title in page.locator(
            ".models article[data-json-schema-level='0'] > .json-schema-2020-12-head "
            ".json-schema-2020-12__title"
        ).all()
    }
    assert schemas == set(document["components"]["schemas"])

    screenshot(tab, "docs")
    # Opened (three of them: rendering all takes Swagger UI long on a busy machine), an
    # operation shows the document's responses, errors included, each with its example body.
    opened = [
        ("GET", "/health"),
        ("GET", "/api/v1/historical/{symbol}"),
        ("POST", "/api/v1/admin/api-keys"),
    ]
    for method, path in opened:
        page.locator(f".opblock-{method.lower()} .opblock-summary-path[data-path='{path}']").click()
    wait_until(
        page,
        f"() => document.querySelectorAll('.opblock .responses-wrapper').length === {len(opened)}",
    )
    codes = page.evaluate(
        """() => [...document.querySelectorAll('.opblock.is-open')].map(block => [
            block.querySelector('.opblock-summary-method').textContent.trim(),
            block.querySelector('.opblock-summary-path').dataset.path,
            [...block.querySelectorAll('.responses-wrapper tr.response')]
                .map(row => row.dataset.code),
            block.querySelectorAll('.responses-wrapper .example').length,
        ])"""
    )
    assert {(method, path): set(responses) for method, path, responses, _ in codes} == {
        key: set(operations[key]["responses"]) for key in opened
    }
    assert all(examples >= len(responses) for _, _, responses, examples in codes)


def test_the_reference_tries_a_request_against_this_server(tab: Tab, server: Server) -> None:
    page = tab.page
    page.goto("/docs")
    page.wait_for_selector("body[data-docs-ready]")
    page.locator(".opblock-summary-path[data-path='/api/v1/status']").click()
    page.click(".btn.authorize")
    page.fill(".auth-container input", server.admin_key)
    page.click(".auth-btn-wrapper .authorize")
    page.click(".btn-done")
    block = page.locator(".opblock.is-open")
    block.locator(".try-out__btn").click()
    block.locator(".execute").click()

    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("200")
    assert (
        '"validation_rate"' in block.locator(".live-responses-table .microlight").first.inner_text()
    )
    # The key stays in the page's memory: nothing stored.
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0


# --- Signing in --------------------------------------------------------------------------------


def test_a_read_key_sees_the_data_views_only(tab: Tab, server: Server) -> None:
    _, read_key = server.make_key("browser-reader", ["read"])
    sign_in(tab, read_key, expect="read")
    page = tab.page

    assert page.locator("#nav a[data-view=overview]").is_visible()
    assert not page.locator("#nav a[data-view=keys]").is_visible()
    assert not page.locator("#nav a[data-view=symbols]").is_visible()
    page.goto("/console#/keys")
    assert page.locator("#view .error").inner_text() == "This view needs an admin key."
    # The key is in this tab's sessionStorage only, and never in a URL.
    assert page.evaluate("sessionStorage.getItem('mdw.console.key')") == read_key
    assert page.evaluate("localStorage.length") == 0
    assert read_key not in page.url


def test_a_refused_key_stays_at_the_prompt_with_the_apis_message(tab: Tab) -> None:
    page = tab.page
    page.goto("/console")
    page.fill("#key-input", "mdw_notakey")
    page.click("#signin-button")

    error = page.locator("#signin-error")
    error.filter(has_text="refused").wait_for()
    assert page.locator("body").get_attribute("data-signed-in") == "no"
    screenshot(tab, "console-sign-in")


def test_a_401_returns_to_the_key_prompt(tab: Tab, server: Server) -> None:
    key_id, read_key = server.make_key("browser-soon-revoked", ["read"])
    sign_in(tab, read_key, expect="read")
    status, _ = server.api.call(
        "PUT", f"/api/v1/admin/api-keys/{key_id}", server.admin_key, {"active": False}
    )
    assert status == 200
    time.sleep(AUTH_CACHE_TTL_SECONDS + 0.5)

    tab.page.goto("/console#/symbol/AAPL")

    tab.page.wait_for_selector("#signin-form")
    assert "refused" in tab.page.locator("#signin-error").inner_text()
    assert tab.page.evaluate("sessionStorage.length") == 0


# --- Overview and symbol page ------------------------------------------------------------------


def test_the_overview_grid_shows_each_timeframes_backfill(tab: Tab, server: Server) -> None:
    page = tab.page
    page.clock.install()  # the refresh timer, moved on below without waiting for it
    sign_in(tab, server.admin_key, expect="admin")
    page.wait_for_selector("#overview-grid")
    _, listing = server.api.call("GET", "/api/v1/symbols", server.admin_key)
    _, status = server.api.call("GET", "/api/v1/status", server.admin_key)

    cells = {
        (cell.get_attribute("data-symbol"), cell.get_attribute("data-timeframe")): (
            cell.get_attribute("data-status")
        )
        for cell in page.locator("#overview-grid td[data-status]").all()
    }
    expected = {
        (symbol["symbol"], timeframe): state["status"]
        for symbol in listing["symbols"]
        for timeframe, state in symbol["backfill"].items()
    }
    assert cells == expected
    assert len(expected) >= 10
    assert page.locator("#card-symbols .big").inner_text() == str(status["symbols"]["total"])
    assert page.locator("#card-stalest .big").inner_text() == status["stalest_symbol"]["symbol"]
    runs = [
        [cell.inner_text() for cell in row.locator("td").all()[:4]]
        for row in page.locator("#recent-runs tbody tr").all()
    ]
    assert runs == [
        [run["symbol"], run["timeframe"], run["status"].replace("_", " "), str(run["bars_written"])]
        for run in status["recent_runs"]
    ]
    assert len(runs) >= 2
    screenshot(tab, "console-overview")

    # A symbol tracked meanwhile appears, pending, at the next refresh, without a reload.
    added, body = server.api.call(
        "POST",
        "/api/v1/admin/symbols",
        server.admin_key,
        {"symbol": "IBM", "asset_class": "stock", "timeframes": ["1d", "1h"]},
    )
    assert added == 201, body
    assert ("IBM", "1h") not in cells
    try:
        page.evaluate("() => { window.notReloaded = true; }")
        page.clock.run_for(16_000)
        page.locator("#overview-grid td[data-symbol='IBM'][data-timeframe='1h']").wait_for()
        assert page.evaluate("() => window.notReloaded") is True
    finally:
        server.api.call("DELETE", "/api/v1/admin/symbols/IBM", server.admin_key)


def test_a_failed_backfill_shows_its_error_as_text(tab: Tab, server: Server) -> None:
    # The simulator's backfills succeed, so the API's answer is altered on its way to the page:
    # one timeframe failed, with an error holding markup and a control character.
    error = '<img src=x onerror="alert(4)"> provider refused\u0007'
    failed: dict[str, str] = {}

    def with_a_failure(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        symbol = body["symbols"][0]
        failed.update(symbol=symbol["symbol"], timeframe=symbol["timeframes"][0])
        symbol["backfill"][failed["timeframe"]] = {
            "status": "failed",
            "last_backfill": None,
            "last_error": error,
        }
        route.fulfill(response=answer, json=body)

    tab.page.route("**/api/v1/symbols", with_a_failure)
    sign_in(tab, server.admin_key, expect="admin")

    cell = tab.page.locator("#overview-grid td[data-status='failed']")
    cell.wait_for()
    tab.page.unroute("**/api/v1/symbols")
    assert cell.count() == 1
    assert cell.get_attribute("data-symbol") == failed["symbol"]
    assert cell.get_attribute("data-timeframe") == failed["timeframe"]
    assert cell.inner_text() == "failed\n" + error.replace("\u0007", "\\u0007")
    assert tab.page.locator("#view img").count() == 0


def flagged_bar(server: Server, symbol: str, last_day: str) -> dict[str, Any]:
    """The newest flagged daily bar within the chart's first window (a year back)."""
    start = f"{int(last_day[:4]) - 1}{last_day[4:10]}"
    _, page = server.api.call(
        "GET",
        f"/api/v1/historical/{symbol}?timeframe=1d&validated_only=false&limit=1000"
        f"&start={start}&end={last_day[:10]}",
        server.admin_key,
    )
    flagged = [bar for bar in page["bars"] if bar["flags"]]
    assert flagged, "the simulator flags a few bars a year"
    return flagged[-1]


def canvas_has_color(page: Any, color: tuple[int, int, int]) -> tuple[int, bool]:
    """How many distinct colours the chart's canvases hold, and whether `color` is among them."""
    return page.evaluate(
        """([r, g, b]) => {
            const colours = new Set(); let found = false;
            for (const canvas of document.querySelectorAll('#chart canvas')) {
                if (!canvas.width || !canvas.height) continue;
                const context = canvas.getContext('2d');
                const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 0; i < data.length; i += 4) {
                    if (data[i + 3] === 0) continue;
                    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
                    const near = (value, target) => Math.abs(value - target) < 3;
                    if (near(data[i], r) && near(data[i + 1], g) && near(data[i + 2], b)) {
                        found = true;
                    }
                }
            }
            return [colours.size, found];
        }""",
        list(color),
    )


def test_the_symbol_page_draws_candles_and_marks_flagged_bars_and_gaps(
    tab: Tab, server: Server
) -> None:
    _, read_key = server.make_key("browser-chart-reader", ["read"])
    sign_in(tab, read_key, expect="read")
    page = tab.page
    _, detail = server.api.call("GET", "/api/v1/symbols/AAPL", server.admin_key)
    stats = detail["stats"]["1d"]
    bar = flagged_bar(server, "AAPL", stats["date_range"]["last"])

    page.goto("/console#/symbol/AAPL/1d")
    page.wait_for_selector("#chart[data-bars]")
    page.wait_for_timeout(300)  # the chart paints on the next animation frame

    colours, flag_drawn = canvas_has_color(page, FLAG_COLOR)
    assert colours > 20  # candles, volume, axes: not a blank canvas
    assert flag_drawn
    # Gaps: the API's missing sessions are listed.
    listed = [cell.inner_text() for cell in page.locator("#gaps-table td").all()]
    assert listed == stats["missing_sessions"]
    assert page.locator("#stat-bars .big").inner_text() == str(stats["record_count"])
    screenshot(tab, "console-symbol")

    # The first window is a year; the launcher keeps 400 days. Dragging the chart to the right
    # (back in time) pages the older bars in through the API's cursors, back to the first.
    assert int(page.get_attribute("#chart", "data-bars") or 0) < stats["record_count"]
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 1100, box["y"] + 200, steps=5)
    page.mouse.up()
    wait_until(
        page,
        f"() => Number(document.querySelector('#chart').dataset.bars) === {stats['record_count']}",
    )

    # The flagged bar: listed, and its flags shown when the pointer is on it.
    row = page.locator(f"#flagged-table tr[data-time='{bar['time']}']")
    assert ", ".join(bar["flags"]) in row.inner_text()
    row.locator("button").click()  # brings the bar into view
    page.wait_for_selector("#chart[data-focus-x]")
    focus_x = float(page.get_attribute("#chart", "data-focus-x") or "nan")
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + focus_x, box["y"] + box["height"] / 2)
    page.locator("#chart-hover", has_text="flags: " + ", ".join(bar["flags"])).wait_for()
    assert page.locator("#chart-hover").inner_text().startswith(bar["time"][:10])


# --- Keys --------------------------------------------------------------------------------------


def key_row(page: Any, name: str) -> Any:
    return page.locator(f"#keys-table tr[data-key-name='{name}']")


def wait_refused(server: Server, key: str) -> float:
    """Seconds until the key is refused (401), polled well past the cache TTL."""
    started = time.monotonic()
    while time.monotonic() - started < AUTH_CACHE_TTL_SECONDS + 5:
        status, _ = server.api.call("GET", "/api/v1/status", key)
        if status == 401:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError("the key still works")


def test_keys_are_created_used_revoked_restored_rotated_and_deleted(
    tab: Tab, server: Server
) -> None:
    sign_in(tab, server.admin_key, expect="admin")
    page = tab.page
    page.goto("/console#/keys")
    page.fill("#new-key-name", "browser-made")
    page.click("#create-key")

    raw = page.locator("#created-key").input_value()
    assert page.locator("#created-key-warning").inner_text() == (
        "Store this key now: it will not be shown again."
    )
    screenshot(tab, "console-key-created")
    page.click("#dialog-confirm")
    assert server.api.call("GET", "/api/v1/status", raw)[0] == 200

    key_row(page, "browser-made").locator("[data-action=revoke]").click()
    key_row(page, "browser-made").locator(".key-status", has_text="revoked").wait_for()
    assert wait_refused(server, raw) <= AUTH_CACHE_TTL_SECONDS + 1

    key_row(page, "browser-made").locator("[data-action=restore]").click()
    key_row(page, "browser-made").locator(".key-status", has_text="active").wait_for()
    started = time.monotonic()
    while server.api.call("GET", "/api/v1/status", raw)[0] != 200:
        assert time.monotonic() - started < AUTH_CACHE_TTL_SECONDS + 5
        time.sleep(0.2)

    key_row(page, "browser-made").locator("[data-action=rotate]").click()
    page.fill("#rotate-grace", "0")
    page.click("#dialog-confirm")
    page.locator("#dialog #created-key").wait_for()
    rotated = page.locator("#created-key").input_value()
    page.click("#dialog-confirm")
    assert rotated != raw
    assert server.api.call("GET", "/api/v1/status", rotated)[0] == 200
    wait_refused(server, raw)

    key_row(page, "browser-made").locator("[data-action=delete]").click()
    assert "cannot be restored" in page.locator("#dialog-body").inner_text()
    page.click("#dialog-confirm")
    key_row(page, "browser-made").wait_for(state="detached")
    wait_refused(server, rotated)
    screenshot(tab, "console-keys")


def test_an_audit_log_holding_markup_is_shown_as_text_and_paged(tab: Tab, server: Server) -> None:
    key_id, key = server.make_key("browser hostile paths", ["read"])
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    connection.request("GET", SENT_PATH, headers={"Authorization": f"Bearer {key}"})
    assert connection.getresponse().status == 400  # too long for a ticker
    connection.close()
    server.sql(
        "INSERT INTO api_key_audit (key_id, event, method, route, path, status_code)"
        " VALUES (%s, 'request', 'GET', '/api/v1/historical/{symbol}', %s, 400)",
        key_id,
        DECODED_PATH,
    )
    for _ in range(55):  # more than a page of 50 rows
        assert server.api.call("GET", "/api/v1/status", key)[0] == 200
    sign_in(tab, server.admin_key, expect="admin")
    page = tab.page

    page.goto(f"/console#/keys/{key_id}")
    page.wait_for_selector("#audit-table tbody tr")
    assert page.locator("#audit-table tbody tr").count() == 50
    page.click("#audit-next")
    page.wait_for_selector("#audit-table", state="attached")
    page.locator(".audit-path", has_text="<script>").first.wait_for()
    paths = [cell.inner_text() for cell in page.locator(".audit-path").all()]
    # As text, with the control characters shown escaped.
    assert SENT_PATH in paths
    assert DECODED_PATH.replace("\u202e", "\\u202e").replace("\u0007", "\\u0007") in paths
    # Nothing from the data became markup.
    assert page.locator("#view img, #view script").count() == 0

    page.fill("#audit-status", "200")
    page.click("#audit-filters button")
    wait_until(
        page,
        "() => [...document.querySelectorAll('#audit-table tbody tr td:nth-child(5)')]"
        ".every(td => td.textContent === '200')",
    )
    page.fill("#audit-status", "")
    page.fill("#audit-since", "2999-01-01")
    page.click("#audit-filters button")
    page.get_by_text("No rows match.").wait_for()
    screenshot(tab, "console-audit")


# --- Symbols -----------------------------------------------------------------------------------


def test_symbols_are_added_with_the_providers_refusal_shown_and_backfilled(
    tab: Tab, server: Server
) -> None:
    sign_in(tab, server.admin_key, expect="admin")
    page = tab.page
    page.goto("/console#/symbols")
    page.wait_for_selector("#symbols-table")
    _, expected_refusal = server.api.call(
        "POST",
        "/api/v1/admin/symbols",
        server.admin_key,
        {"symbol": "XXXX", "asset_class": "stock"},
    )

    page.fill("#new-symbol", "NOSUCH")
    page.click("#add-symbol")
    refusal = page.locator("#add-symbol-error .error")
    refusal.wait_for()
    assert expected_refusal["error"]["message"].replace("XXXX", "NOSUCH") in refusal.inner_text()
    # An error message that repeats markup sent to the API stays text.
    page.fill("#new-symbol-timeframes", "<b>1d</b>")
    page.click("#add-symbol")
    page.locator("#add-symbol-error .error", has_text="got '<b>1d</b>'").wait_for()
    assert page.locator("#view b").count() == 0
    page.fill("#new-symbol-timeframes", "")

    page.fill("#new-symbol", "JPM")
    page.fill("#new-symbol-timeframes", "1d")
    page.click("#add-symbol")
    page.wait_for_selector("#symbol-added")
    row = page.locator("#symbols-table tr[data-symbol='JPM']")
    # The launcher's scheduler may be backfilling the new symbol at the same moment, so what
    # the backfill did is read from the API's answer, and the page must show exactly that.
    with page.expect_response(lambda r: r.url.endswith("/JPM/backfill"), timeout=60_000) as sent:
        row.locator("[data-action=backfill]").click()
    outcome = sent.value.json()
    assert sent.value.status == 200, outcome
    (unit,) = outcome["results"]
    result = page.locator("#backfill-results tr[data-timeframe='1d']")
    result.wait_for()
    assert [cell.inner_text() for cell in result.locator("td").all()] == [
        "1d",
        {"in_progress": "in progress"}.get(unit["status"], unit["status"]),
        str(unit["bars_written"]),
        str(unit["provider_requests"]),
        unit["error"] or "",
    ]
    screenshot(tab, "console-symbols")
    # Either way, the symbol's bars are there once its backfill is done.
    deadline = time.monotonic() + 30
    while (
        server.api.call("GET", "/api/v1/symbols/JPM", server.admin_key)[1]["stats"]["1d"][
            "record_count"
        ]
        == 0
    ):
        assert time.monotonic() < deadline, "JPM's bars never arrived"
        time.sleep(0.5)

    row.locator("[data-action=deactivate]").click()
    row.locator(".symbol-active", has_text="no").wait_for()
    assert server.api.call("GET", "/api/v1/symbols/JPM", server.admin_key)[0] == 404
