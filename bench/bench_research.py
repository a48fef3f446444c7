"""Research reads: 100,000 bars as CSV against JSON, with and without gzip, and `latest` for
100 symbols against one.

In a scratch database, over real HTTP to `make run`'s server (devtools/local_server.py, which
gzips as API Gateway does) on one keep-alive connection:

- CSV: `GET /api/v1/historical/AAPL?timeframe=1m&limit=100000` paged to the end (JSON follows
  `next_cursor`, CSV follows the `Link` header), p50 of the whole walk and the bytes received.
  Targets: CSV time <= 1.0x JSON, CSV bytes <= 0.7x JSON, CSV with gzip <= 0.25x JSON's bytes.
- latest: `GET /api/v1/latest?symbols=<100 symbols>` against `?symbols=AAPL`, p50; and the
  database round trips of the service call for 100 symbols. Targets: one round trip, <= 3x.
"""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime
from urllib.parse import urljoin

from bench.bench_reads import SEED_BARS
from bench.common import fmt_ms, p50, scratch_database, timings

MINUTE_BARS = 100_000
SYMBOLS = 100
HISTORICAL = "/api/v1/historical/AAPL?timeframe=1m&limit=100000"
REPEAT = 5
LATEST_REPEAT = 100


def _seed(url: str) -> str:
    import psycopg

    from chalicelib.keys import service as keys_service

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracked_symbols (symbol, asset_class, timeframes) "
            "VALUES ('AAPL', 'stock', '{1m,1d}')"
        )
        conn.execute(
            SEED_BARS,
            {
                "symbol": "AAPL",
                "timeframe": "1m",
                "first": datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
                "step": "1 minute",
                "count": MINUTE_BARS,
            },
        )
        for n in range(SYMBOLS):
            symbol = "AAPL" if n == 0 else f"S{n:03d}"
            if n:
                conn.execute(
                    "INSERT INTO tracked_symbols (symbol, asset_class, timeframes) "
                    "VALUES (%s, 'stock', '{1d}')",
                    (symbol,),
                )
            conn.execute(
                SEED_BARS,
                {
                    "symbol": symbol,
                    "timeframe": "1d",
                    "first": datetime(2015, 1, 2, 5, tzinfo=UTC),
                    "step": "1 day",
                    "count": 2520,
                },
            )
        conn.execute("ANALYZE bars")
        with conn.transaction():
            created = keys_service.create_key(conn, name="bench-research", scopes=["read"])
    return created.raw_key


class Walk:
    """Every page of one query: how many requests, bytes on the wire and bars."""

    def __init__(self) -> None:
        self.pages = 0
        self.wire_bytes = 0
        self.bars = 0


def _walk(connection: http.client.HTTPConnection, headers: dict[str, str], csv: bool) -> Walk:
    walk = Walk()
    path: str | None = HISTORICAL
    while path:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        assert response.status == 200, raw[:200]
        walk.pages += 1
        walk.wire_bytes += len(raw)
        if response.getheader("Content-Encoding") == "gzip":
            import gzip

            raw = gzip.decompress(raw)
        if csv:
            walk.bars += raw.count(b"\n") - 1
            link = response.getheader("Link")
            path = (
                urljoin(HISTORICAL, link.removeprefix("<").removesuffix('>; rel="next"'))
                if link
                else None
            )
        else:
            page = json.loads(raw)
            walk.bars += page["count"]
            path = f"{HISTORICAL}&cursor={page['next_cursor']}" if page["next_cursor"] else None
    assert walk.bars == MINUTE_BARS, walk.bars
    return walk


def _get(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> None:
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, body[:200]


def _latest_round_trips(url: str, symbols: str) -> int:
    import psycopg

    from chalicelib.marketdata.models import LatestQuery
    from chalicelib.marketdata.service import latest_bars
    from devtools.roundtrips import counting_round_trips

    with psycopg.connect(url, autocommit=True) as conn:
        latest_bars(conn, LatestQuery(symbols=symbols))  # warm
        with counting_round_trips(conn) as counted:
            answer = latest_bars(conn, LatestQuery(symbols=symbols))
    assert answer.count == SYMBOLS
    return counted.count


def run() -> str:
    import os

    from chalicelib import container
    from devtools.local_server import LocalServer, bind, load_app

    with scratch_database() as url:
        raw_key = _seed(url)
        auth = {"Authorization": f"Bearer {raw_key}"}
        previous = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        container.reset()
        app, config = load_app()
        server = LocalServer(bind("127.0.0.1", 0), app=app, config=config, request_lines=None)
        server.start()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            cases = {
                "JSON (baseline)": ({**auth, "Accept": "application/json"}, False),
                "CSV": ({**auth, "Accept": "text/csv"}, True),
                "JSON, gzip": ({**auth, "Accept-Encoding": "gzip"}, False),
                "CSV, gzip": ({**auth, "Accept": "text/csv", "Accept-Encoding": "gzip"}, True),
            }
            walks: dict[str, Walk] = {}
            times: dict[str, float] = {}
            for name, (headers, csv) in cases.items():
                walks[name] = _walk(connection, headers, csv)
                times[name] = p50(
                    timings(
                        lambda h=headers, c=csv: _walk(connection, h, c), repeat=REPEAT, warmup=1
                    )
                )
            everyone = ",".join(["AAPL", *(f"S{n:03d}" for n in range(1, SYMBOLS))])
            latest_one = p50(
                timings(
                    lambda: _get(connection, "/api/v1/latest?symbols=AAPL", auth),
                    repeat=LATEST_REPEAT,
                )
            )
            latest_all = p50(
                timings(
                    lambda: _get(connection, f"/api/v1/latest?symbols={everyone}", auth),
                    repeat=LATEST_REPEAT,
                )
            )
        finally:
            connection.close()
            server.stop()
            container.reset()
            if previous is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = previous
            container.reset()
        round_trips = _latest_round_trips(url, everyone)

    base_time = times["JSON (baseline)"]
    base_bytes = walks["JSON (baseline)"].wire_bytes
    targets = {
        "CSV": (1.0, 0.7),
        "CSV, gzip": (None, 0.25),
    }
    rows = []
    for name, walk in walks.items():
        time_ratio = times[name] / base_time
        bytes_ratio = walk.wire_bytes / base_bytes
        target_text = ""
        if name in targets:
            time_target, bytes_target = targets[name]
            checks = []
            if time_target is not None:
                verdict = "met" if time_ratio <= time_target else "NOT met"
                checks.append(f"time <= {time_target}x: {verdict}")
            verdict = "met" if bytes_ratio <= bytes_target else "NOT met"
            checks.append(f"bytes <= {bytes_target}x: {verdict}")
            target_text = "; ".join(checks)
        rows.append(
            f"| {name} | {walk.pages} | {fmt_ms(times[name])} | {time_ratio:.2f}x | "
            f"{walk.wire_bytes / 1e6:,.2f} MB | {bytes_ratio:.2f}x | {target_text} |"
        )
    latest_ratio = latest_all / latest_one
    return "\n".join(
        [
            "## Research reads (`python -m bench research`)",
            "",
            f"{MINUTE_BARS:,} minute bars of one symbol, "
            "`GET /api/v1/historical/AAPL?timeframe=1m&limit=100000` paged to the end over real "
            "HTTP (`make run`'s server, one keep-alive connection; it gzips as API Gateway's "
            "`MinimumCompressionSize` does), p50 of the whole walk, bytes as received:",
            "",
            "| format | pages | p50 | time vs JSON | bytes | bytes vs JSON | target |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"`GET /api/v1/latest` over the same connection, p50 of {LATEST_REPEAT} requests, "
            f"{SYMBOLS} symbols with 2,520 daily bars each:",
            "",
            "| request | p50 | ratio | database round trips | target |",
            "|---|---|---|---|---|",
            f"| one symbol (baseline) | {fmt_ms(latest_one)} | 1.0x | | |",
            f"| {SYMBOLS} symbols | {fmt_ms(latest_all)} | {latest_ratio:.2f}x | {round_trips} | "
            f"<= 3x: {'met' if latest_ratio <= 3 else 'NOT met'}; one round trip: "
            f"{'met' if round_trips == 1 else 'NOT met'} |",
        ]
    )
