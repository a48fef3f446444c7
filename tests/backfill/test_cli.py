from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from chalicelib.backfill.cli import ProgressLine, summary_lines
from chalicelib.backfill.models import BackfillResult
from chalicelib.cli import main
from tests.backfill.conftest import SIM_API_KEY
from tests.backfill.test_service import NOW
from tests.factories import make_symbol


@pytest.fixture
def cli_env(pinned_db, simulator, set_env):
    """The CLI against the test's connection and the simulator, with a short daily depth."""
    set_env(
        POLYGON_BASE_URL=simulator.url,
        POLYGON_API_KEY=SIM_API_KEY,
        BACKFILL_DEPTH_DAILY_DAYS="20",
    )
    make_symbol(pinned_db, "AAPL")
    make_symbol(pinned_db, "BTC", asset_class="crypto", timeframes=["1d", "1h"])
    return pinned_db


def invoke(*args: str):
    return CliRunner().invoke(main, ["backfill", *args])


def bar_counts(conn):
    return dict(
        conn.execute(
            "SELECT symbol || ' ' || timeframe, count(*) FROM bars GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )


def test_backfill_shows_progress_and_a_summary(cli_env):
    result = invoke()

    assert result.exit_code == 0, result.output
    progress = result.stderr.splitlines()
    assert [line.split(" - ")[1] for line in progress] == [
        "AAPL 1d completed",
        "BTC 1h completed",
        "BTC 1d completed",
    ]
    assert progress[0].startswith("backfill [1/3] ")
    assert progress[2].startswith("backfill [3/3] ")
    assert "bars/s" in progress[2]
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "symbol",
        "tf",
        "status",
        "fetched",
        "written",
        "requests",
        "seconds",
        "error",
    ]
    assert [row.split()[:3] for row in table[1:4]] == [
        ["AAPL", "1d", "completed"],
        ["BTC", "1h", "completed"],
        ["BTC", "1d", "completed"],
    ]
    counts = bar_counts(cli_env)
    assert table[4].startswith("3 backfilled: 3 completed, 0 failed; ")
    assert f"{sum(counts.values()):,} bars written" in table[4]


def test_a_failed_symbol_is_in_the_table_and_the_exit_status(cli_env, simulator):
    simulator.inject_fault("forbidden", ticker="X:BTCUSD", times=None)

    result = invoke()

    assert result.exit_code == 1
    rows = {tuple(row.split()[:3]): row for row in result.stdout.splitlines()[1:4]}
    assert set(rows) == {
        ("AAPL", "1d", "completed"),
        ("BTC", "1h", "failed"),
        ("BTC", "1d", "failed"),
    }
    assert "provider: GET /v2/aggs/ticker/X:BTCUSD/range/1/hour/" in rows[("BTC", "1h", "failed")]
    assert "3 backfilled: 1 completed, 2 failed" in result.stdout
    assert SIM_API_KEY not in result.output
    assert list(bar_counts(cli_env)) == ["AAPL 1d"]


def test_options_choose_symbols_timeframe_and_window(cli_env, simulator):
    result = invoke("--symbol", "btc-usd", "--timeframe", "1d", "--since", "2024-06-01")

    assert result.exit_code == 0, result.output
    aggregates = [r.path for r in simulator.requests if r.path.startswith("/v2/aggs/")]
    assert len(aggregates) == 1
    assert aggregates[0].startswith("/v2/aggs/ticker/X:BTCUSD/range/1/day/2024-06-01/")
    assert list(bar_counts(cli_env)) == ["BTC 1d"]


def test_full_refetches_from_the_default_depth(cli_env, simulator):
    invoke("--symbol", "AAPL")
    simulator.clear_log()

    result = invoke("--symbol", "AAPL", "--full")

    assert result.exit_code == 0, result.output
    first_path = [r.path for r in simulator.requests if r.path.startswith("/v2/aggs/")][0]
    # The full run's own window, not the first run's oldest bar: the two runs may fall on
    # either side of UTC midnight, and each window ends on its run's date.
    start, end = cli_env.execute(
        "SELECT range_start, range_end FROM backfill_runs WHERE symbol = 'AAPL' ORDER BY id DESC"
    ).fetchone()
    assert first_path.endswith(f"/range/1/day/{start.isoformat()}/{end.isoformat()}")
    assert (end - start).days == 20  # BACKFILL_DEPTH_DAILY_DAYS, set by the fixture


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "NOPE"], "Error: not a tracked symbol: NOPE\n"),
        (
            ["--symbol", "AAPL", "--timeframe", "1h"],
            "Error: AAPL does not track the 1h timeframe\n",
        ),
        (["--symbol", "bad/symbol"], "Error: symbol must be 1-15 letters"),
    ],
)
def test_domain_errors_are_one_line(cli_env, args, message):
    result = invoke(*args)

    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output
    assert bar_counts(cli_env) == {}


def test_a_missing_polygon_key_is_one_line(cli_env, set_env):
    set_env(POLYGON_API_KEY=None)

    result = invoke()

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no Polygon API key: set POLYGON_API_KEY or POLYGON_API_KEY_SECRET_ARN\n"
    )


def test_a_bad_date_is_a_usage_error(cli_env):
    result = invoke("--since", "06/01/2024")

    assert result.exit_code == 2
    assert "Invalid value for '--since'" in result.stderr


def test_nothing_to_backfill_is_said_plainly(cli_env):
    result = invoke("--timeframe", "1w")

    assert result.exit_code == 0
    assert result.stdout == "nothing to backfill: no active symbol tracks the 1w timeframe\n"


def result_of(symbol: str, status: str, *, written: int = 0, error: str | None = None):
    return BackfillResult(
        symbol=symbol,
        timeframe="1d",
        status=status,  # type: ignore[arg-type]
        bars_written=written,
        provider_requests=2,
        error=error,
        started_at=NOW,
        finished_at=NOW,
        bars_fetched=written,
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal():
    stream = Terminal()
    progress = ProgressLine(2, stream=stream)

    progress.update(result_of("AAPL", "completed", written=1200))
    progress.update(result_of("MSFT", "failed", error="provider: boom"))
    progress.close()

    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    last = text.split("\r")[-1]
    assert last.startswith("backfill [2/2, 1 failed] 1,200 bars written, ")
    assert last.rstrip().endswith("MSFT 1d failed")


def test_summary_lines_shorten_long_errors():
    lines = summary_lines([result_of("MSFT", "failed", error="provider: " + "x" * 200)])

    assert lines[1].endswith("…")
    assert len(lines[1].split("  ")[-1]) == 60
    assert lines[2] == "1 backfilled: 0 completed, 1 failed; 0 bars written in 0.0 s"
