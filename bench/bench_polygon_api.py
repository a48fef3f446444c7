"""The Polygon-compatible read API against what a user would do without it.

Both cases in a scratch database, through chalice's test client (authorizer, middleware, query
parsing and JSON encoding included), samples of the two sides interleaved so load on the
machine falls on both alike:

- a year of daily bars (252 rows): `GET /v2/aggs/ticker/AAPL/range/1/day/…` against the native
  `GET /api/v1/historical/AAPL` for the same year, p50 of one request. Target ≤ 1.2x.
- a year of one-minute bars (252 sessions × 390 minutes = 98,280 rows) as 1-hour bars: resampled
  by the server (`/range/1/hour/…`, one request) against fetching the minute bars through the
  native endpoint (every page) and resampling them with pandas on New York time, as a user
  would otherwise. Target ≤ 0.2x.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from bench.bench_reads import _app_on
from bench.common import fmt_ms, p50, scratch_database

DAILY_TARGET = 1.2
RESAMPLE_TARGET = 0.2
SESSIONS = 252
SESSION_MINUTES = 390

# Weekday sessions of 2024 from 09:30 New York, 390 minutes each (no holidays: the shape of a
# year is what matters here).
SEED_MINUTES = """
INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap, trades,
                  validated, flags)
SELECT 'AAPL', '1m', (d.day + time '09:30' + m.n * interval '1 minute') AT TIME ZONE
           'America/New_York',
       100 + m.n * 0.001, 101 + m.n * 0.001, 99 + m.n * 0.001, 100.5 + m.n * 0.001,
       1000 + m.n %% 97, 100.2 + m.n * 0.001, 50 + m.n %% 13, true, '{}'
FROM (
    SELECT day::date AS day
    FROM generate_series(date '2024-01-01', date '2024-12-31', interval '1 day') AS day
    WHERE extract(isodow FROM day) < 6
    ORDER BY day
    LIMIT %(sessions)s
) AS d
CROSS JOIN generate_series(0, %(minutes)s - 1) AS m(n)
"""
SEED_DAYS = """
INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap, trades,
                  validated, flags)
SELECT 'AAPL', '1d', (day::date)::timestamp AT TIME ZONE 'America/New_York',
       100, 101, 99, 100.5, 1000000, 100.2, 5000, true, '{}'
FROM generate_series(date '2023-01-01', date '2023-12-31', interval '1 day') AS day
WHERE extract(isodow FROM day) < 6
LIMIT %(sessions)s
"""


def _seed(url: str) -> str:
    import psycopg

    from chalicelib.keys import service as keys_service

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracked_symbols (symbol, asset_class, timeframes) "
            "VALUES ('AAPL', 'stock', '{1d,1m}')"
        )
        conn.execute(SEED_MINUTES, {"sessions": SESSIONS, "minutes": SESSION_MINUTES})
        conn.execute(SEED_DAYS, {"sessions": SESSIONS})
        conn.execute("ANALYZE bars")
        with conn.transaction():
            created = keys_service.create_key(conn, name="bench-reader", scopes=["read"])
    return created.raw_key


def _interleaved(first: Any, second: Any, *, repeat: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for action, samples in ((first, a), (second, b)):
            started = time.perf_counter()
            action()
            samples.append(time.perf_counter() - started)
    return p50(a), p50(b)


def run() -> str:
    import pandas as pd

    with scratch_database() as url:
        raw_key = _seed(url)
        headers = {"Authorization": f"Bearer {raw_key}"}
        with _app_on(url) as client:

            def get(path: str) -> bytes:
                response = client.http.get(path, headers=headers)
                assert response.status_code == 200, response.body[:300]
                return bytes(response.body)

            def polygon_daily() -> None:
                body = json.loads(get("/v2/aggs/ticker/AAPL/range/1/day/2023-01-01/2023-12-31"))
                assert body["resultsCount"] == SESSIONS

            def native_daily() -> None:
                body = json.loads(
                    get("/api/v1/historical/AAPL?start=2023-01-01&end=2023-12-31&limit=5000")
                )
                assert body["count"] == SESSIONS

            hours: list[int] = []

            def server_resample() -> None:
                body = json.loads(
                    get("/v2/aggs/ticker/AAPL/range/1/hour/2024-01-01/2024-12-31?limit=50000")
                )
                assert "next_url" not in body
                hours.append(body["resultsCount"])

            client_hours: list[int] = []

            def client_resample() -> None:
                bars: list[dict[str, Any]] = []
                cursor = ""
                while True:
                    page = json.loads(
                        get(
                            "/api/v1/historical/AAPL?timeframe=1m&start=2024-01-01"
                            f"&end=2024-12-31&limit=100000{cursor}"
                        )
                    )
                    bars.extend(page["bars"])
                    if not page["next_cursor"]:
                        break
                    cursor = f"&cursor={page['next_cursor']}"
                frame = pd.DataFrame(bars)
                local = pd.to_datetime(frame["time"], utc=True).dt.tz_convert("America/New_York")
                frame = frame.assign(weighted=frame["vwap"] * frame["volume"]).set_index(local)
                grouped = frame.resample("1h").agg(
                    {
                        "open": "first",
                        "high": "max",
                        "low": "min",
                        "close": "last",
                        "volume": "sum",
                        "weighted": "sum",
                        "trades": "sum",
                        "time": "count",
                    }
                )
                grouped = grouped[grouped["time"] > 0]
                client_hours.append(len(grouped))

            polygon_p50, native_p50 = _interleaved(polygon_daily, native_daily, repeat=50, warmup=3)
            server_p50, client_p50 = _interleaved(
                server_resample, client_resample, repeat=5, warmup=1
            )

    assert hours[-1] == client_hours[-1] == SESSIONS * 7, (hours[-1], client_hours[-1])
    daily_ratio = polygon_p50 / native_p50
    resample_ratio = server_p50 / client_p50
    daily_verdict = "met" if daily_ratio <= DAILY_TARGET else "NOT met"
    resample_verdict = "met" if resample_ratio <= RESAMPLE_TARGET else "NOT met"
    minutes = SESSIONS * SESSION_MINUTES
    return "\n".join(
        [
            "## Polygon-compatible reads (`python -m bench polygon_api`)",
            "",
            "Through chalice's test client (authorizer, middleware, parsing, encoding); the two "
            "sides of each case measured in alternation.",
            "",
            "| case | Polygon-compatible p50 | compared with | its p50 | ratio | target |",
            "|---|---|---|---|---|---|",
            f"| a year of daily bars ({SESSIONS} rows), one request | {fmt_ms(polygon_p50)} | "
            f"the native endpoint, same year | {fmt_ms(native_p50)} | {daily_ratio:.2f}x | "
            f"≤ {DAILY_TARGET}x: {daily_verdict} |",
            f"| a year of minute bars ({minutes:,}) as {hours[-1]:,} 1-hour bars, resampled "
            f"by the server | {fmt_ms(server_p50)} | the minute bars through the native "
            f"endpoint (every page) + pandas `resample('1h')` | {fmt_ms(client_p50)} | "
            f"{resample_ratio:.2f}x | ≤ {RESAMPLE_TARGET}x: {resample_verdict} |",
            "",
            f"_(measured {datetime.now(UTC):%Y-%m-%d})_",
        ]
    )
