"""The local server `make run` uses: a year of daily bars over real HTTP on 127.0.0.1.

In a scratch database, `GET /api/v1/historical/AAPL` for one year of daily bars (252 rows),
p50 of one request:

- in-process through chalice's test client (the app's own cost: the baseline);
- through `make run`'s server (devtools/local_server.py) on one keep-alive connection, and on a
  new connection per request;
- through `chalice local`'s own request handler on one keep-alive connection, for comparison
  (it writes headers and body apart, and a keep-alive client waits for a delayed ACK).

Target: keep-alive p50 under 5 ms; the server's own overhead is the ratio to the in-process p50.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from bench.bench_reads import SEED_BARS, _app_on
from bench.common import fmt_ms, p50, scratch_database, timings

DAILY_BARS = 252
PATH = "/api/v1/historical/AAPL?start=2023-01-01&end=2023-12-31&limit=5000"
TARGET_MS = 5.0
REPEAT = 200


def _seed(url: str) -> str:
    import psycopg

    from chalicelib.keys import service as keys_service

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracked_symbols (symbol, asset_class, timeframes) "
            "VALUES ('AAPL', 'stock', '{1d}')"
        )
        conn.execute(
            SEED_BARS,
            {
                "symbol": "AAPL",
                "timeframe": "1d",
                "first": datetime(2023, 1, 3, 5, tzinfo=UTC),
                "step": "1 day",
                "count": DAILY_BARS,
            },
        )
        conn.execute("ANALYZE bars")
        with conn.transaction():
            created = keys_service.create_key(conn, name="bench-local", scopes=["read"])
    return created.raw_key


def _get(connection: http.client.HTTPConnection, headers: dict[str, str]) -> None:
    connection.request("GET", PATH, headers=headers)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, body[:200]


def _over_http(port: int, headers: dict[str, str], *, keep_alive: bool, repeat: int) -> float:
    if keep_alive:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            return p50(timings(lambda: _get(connection, headers), repeat=repeat))
        finally:
            connection.close()

    def fresh() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            _get(connection, headers)
        finally:
            connection.close()

    return p50(timings(fresh, repeat=repeat))


def _chalice_local(app: object, measure: Callable[[int], float]) -> float:
    """`chalice local`'s own server and handler, in a thread, on a free port."""
    from chalice.local import LocalDevServer

    from devtools.local_server import load_app

    _, config = load_app()
    server = LocalDevServer(app, config, "127.0.0.1", 0)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        return measure(server.server.server_address[1])
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


def run() -> str:
    from devtools.local_server import LocalServer, bind, load_app

    with scratch_database() as url:
        raw_key = _seed(url)
        headers = {"Authorization": f"Bearer {raw_key}"}
        with _app_on(url) as client:

            def in_process() -> None:
                response = client.http.get(PATH, headers=headers)
                assert response.status_code == 200, response.body[:200]

            in_process_p50 = p50(timings(in_process, repeat=REPEAT))

            app, config = load_app()
            server = LocalServer(bind("127.0.0.1", 0), app=app, config=config, request_lines=None)
            server.start()
            try:
                keep_alive_p50 = _over_http(server.port, headers, keep_alive=True, repeat=REPEAT)
                new_connection_p50 = _over_http(
                    server.port, headers, keep_alive=False, repeat=REPEAT
                )
            finally:
                server.stop()
            chalice_keep_alive_p50 = _chalice_local(
                app, lambda port: _over_http(port, headers, keep_alive=True, repeat=20)
            )

    verdict = "met" if keep_alive_p50 * 1000 < TARGET_MS else "NOT met"
    return "\n".join(
        [
            "## Local server (`python -m bench local_server`)",
            "",
            f"`GET /api/v1/historical/AAPL` for one year of daily bars ({DAILY_BARS} rows) over "
            "real HTTP on 127.0.0.1 (`http.client`), p50 of one request, against the same "
            "request in-process through chalice's test client in the same run.",
            "",
            "| how | p50 | ratio to in-process | target |",
            "|---|---|---|---|",
            f"| in-process (chalice's test client; baseline) | {fmt_ms(in_process_p50)} | 1.0x | |",
            f"| `make run`'s server, one keep-alive connection | {fmt_ms(keep_alive_p50)} | "
            f"{keep_alive_p50 / in_process_p50:.1f}x | < {TARGET_MS:.0f} ms: {verdict} |",
            f"| `make run`'s server, a new connection per request | "
            f"{fmt_ms(new_connection_p50)} | {new_connection_p50 / in_process_p50:.1f}x | |",
            f"| `chalice local`'s handler, one keep-alive connection | "
            f"{fmt_ms(chalice_keep_alive_p50)} | {chalice_keep_alive_p50 / in_process_p50:.1f}x "
            "| (for comparison) |",
        ]
    )
