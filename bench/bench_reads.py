"""Market data reads: `GET /api/v1/historical/{symbol}` through the app against a bare fetch.

Two cases, both in a scratch database, through chalice's test client (authorizer, middleware,
query parsing, cursor signing and msgspec encoding included):

- one year of daily bars (252 rows), p50 of one request;
- 100,000 one-minute bars, the whole range paged with `limit=100000` (pages are cut at 6 MB,
  so it takes several requests), total time.

The baseline is the same run's bare fetch of the same rows: the page's SELECT through psycopg
(split-adjusted, from the `adjusted_bars` view, as the endpoint reads by default), rows as
tuples, nothing else. Target: the minute read within 2x of its bare fetch.

A third case prices the split adjustment on read, with two splits inside the minute range: the
minute read split-adjusted (the default) against the same read with `adjusted=false`, in
alternation. Target: within 1.2x. The bare fetches through the view and from the table are shown
beside it: the seeded traded prices are short decimals and their quotients are not, so part of
the difference is the longer numbers PostgreSQL writes and the client parses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bench.common import fmt_ms, p50, scratch_database, timings

MINUTE_BARS = 100_000
DAILY_BARS = 252
TARGET_RATIO = 2.0
ADJUSTMENT_TARGET_RATIO = 1.2

SEED_BARS = """
INSERT INTO bars (symbol, timeframe, time, open, high, low, close, volume, vwap, trades,
                  validated, flags)
SELECT %(symbol)s, %(timeframe)s, %(first)s::timestamptz + n * %(step)s::interval,
       100 + n * 0.001, 101 + n * 0.001, 99 + n * 0.001, 100.5 + n * 0.001,
       1000 + n %% 97, 100.2 + n * 0.001, 50 + n %% 13, true, '{}'
FROM generate_series(0, %(count)s - 1) AS n
"""

BARE_FETCH = """
SELECT time, open, high, low, close, volume, vwap, trades, validated, flags
FROM {relation} WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s AND validated
ORDER BY time
"""


@contextmanager
def _app_on(url: str) -> Iterator[Any]:
    """The app pointed at `url`, through chalice's test client."""
    from chalice.test import Client

    from chalicelib import container

    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    container.reset()
    from app import app

    try:
        with Client(app, stage_name="local") as client:
            yield client
    finally:
        container.reset()  # closes the pool
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        container.reset()


def _seed(url: str) -> str:
    import psycopg

    from chalicelib.keys import service as keys_service

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tracked_symbols (symbol, asset_class, timeframes) "
            "VALUES ('AAPL', 'stock', '{1d,1m}')"
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
        # Two splits inside the minute range: the adjusted read divides a third of the bars by 8
        # and another third by 2.
        conn.execute(
            "INSERT INTO splits (symbol, execution_date, split_from, split_to)"
            " VALUES ('AAPL', '2024-01-25', 1, 4), ('AAPL', '2024-02-20', 1, 2)"
        )
        conn.execute("ANALYZE bars")
        with conn.transaction():
            created = keys_service.create_key(conn, name="bench-reader", scopes=["read"])
    return created.raw_key


def _bare_fetch(url: str, timeframe: str, relation: str = "adjusted_bars") -> float:
    import psycopg

    query = BARE_FETCH.format(relation=relation)
    with psycopg.connect(url) as conn:
        samples = timings(
            lambda: conn.execute(query, {"symbol": "AAPL", "timeframe": timeframe}).fetchall(),
            repeat=7 if timeframe == "1m" else 50,
        )
    return p50(samples)


def _next_cursor(body: bytes) -> str | None:
    marker = b'"next_cursor":"'
    at = body.rfind(marker)
    if at < 0:
        return None
    start = at + len(marker)
    return body[start : body.index(b'"', start)].decode()


def run() -> str:
    with scratch_database() as url:
        raw_key = _seed(url)
        headers = {"Authorization": f"Bearer {raw_key}"}
        bare_daily = _bare_fetch(url, "1d")
        bare_minute = _bare_fetch(url, "1m")
        bare_traded = _bare_fetch(url, "1m", relation="bars")

        with _app_on(url) as client:

            def daily() -> None:
                response = client.http.get(
                    "/api/v1/historical/AAPL?start=2023-01-01&end=2023-12-31&limit=5000",
                    headers=headers,
                )
                assert response.status_code == 200, response.body[:200]

            pages: list[int] = []

            def minute(adjusted: str = "true") -> None:
                pages.clear()
                cursor = ""
                while True:
                    response = client.http.get(
                        f"/api/v1/historical/AAPL?timeframe=1m&limit={MINUTE_BARS}"
                        f"&adjusted={adjusted}{cursor}",
                        headers=headers,
                    )
                    assert response.status_code == 200, response.body[:200]
                    pages.append(len(response.body))
                    # Decoding the pages is the client's cost, not the API's: only the cursor
                    # (the body's last field) is read.
                    token = _next_cursor(response.body)
                    if token is None:
                        break
                    cursor = f"&cursor={token}"
                assert sum(1 for _ in pages) >= 1

            daily_p50 = p50(timings(daily, repeat=50))
            # Adjusted and traded reads in alternation, so both see the same machine.
            adjusted_samples: list[float] = []
            traded_samples: list[float] = []
            for adjusted in ("true", "false"):  # warm-up
                minute(adjusted)
            for _ in range(5):
                adjusted_samples.extend(timings(minute, repeat=1, warmup=0))
                traded_samples.extend(timings(lambda: minute("false"), repeat=1, warmup=0))
            minute()  # `pages` describes the default read
            minute_p50 = p50(adjusted_samples)
            traded_p50 = p50(traded_samples)

    minute_ratio = minute_p50 / bare_minute
    verdict = "met" if minute_ratio <= TARGET_RATIO else "NOT met"
    adjustment_ratio = minute_p50 / traded_p50
    adjustment_verdict = "met" if adjustment_ratio <= ADJUSTMENT_TARGET_RATIO else "NOT met"
    largest = max(pages) / 1e6 if pages else 0.0
    return "\n".join(
        [
            "## Market data reads (`python -m bench reads`)",
            "",
            "`GET /api/v1/historical/{symbol}` through chalice's test client (authorizer, "
            "middleware, parsing, cursor, msgspec encoding) against the same run's bare psycopg "
            "fetch of the same rows.",
            "",
            "| case | API p50 | bare fetch p50 | ratio | target |",
            "|---|---|---|---|---|",
            f"| 1 year of daily bars ({DAILY_BARS} rows), one request | {fmt_ms(daily_p50)} | "
            f"{fmt_ms(bare_daily)} | {daily_p50 / bare_daily:.1f}x | (fixed per-request cost "
            "dominates) |",
            f"| {MINUTE_BARS:,} minute bars, {len(pages)} pages under 6 MB "
            f"(largest {largest:.2f} MB) | {fmt_ms(minute_p50)} | {fmt_ms(bare_minute)} | "
            f"{minute_ratio:.2f}x | ≤ {TARGET_RATIO:.0f}x: {verdict} |",
            "",
            "Split adjustment on read, two splits inside the minute range: split-adjusted (the "
            "default, the `adjusted_bars` view) against traded prices (`adjusted=false`, the "
            "table).",
            "",
            "| case | adjusted p50 | traded p50 | ratio | target |",
            "|---|---|---|---|---|",
            f"| {MINUTE_BARS:,} minute bars through the endpoint, in alternation | "
            f"{fmt_ms(minute_p50)} | {fmt_ms(traded_p50)} | {adjustment_ratio:.2f}x | "
            f"≤ {ADJUSTMENT_TARGET_RATIO}x: {adjustment_verdict} |",
            f"| the same rows, bare fetch | {fmt_ms(bare_minute)} | {fmt_ms(bare_traded)} | "
            f"{bare_minute / bare_traded:.2f}x | (the quotients are longer numbers to write and "
            "parse) |",
        ]
    )
