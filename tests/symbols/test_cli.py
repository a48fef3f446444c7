"""`mdw symbols …` through click's CliRunner, on the session database (committed), with the
provider played by the simulator; and the CLI's local defaults beside a running `make run`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from chalicelib import container, db
from chalicelib.cli import main
from chalicelib.cli_options import name_options
from chalicelib.config import get_settings
from chalicelib.local_state import LocalServerState, read_live_state, state_path, write_state
from devtools.polygon_sim import PolygonSimulator
from tests.factories import daily_times, make_bars, make_symbol

pytestmark = pytest.mark.committed

SIM_KEY = "sim-cli-key"


@pytest.fixture(scope="module")
def simulator() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=SIM_KEY) as sim:
        yield sim


@pytest.fixture
def mdw(committed_db: str, simulator, set_env: Callable[..., None], tmp_path) -> Any:
    set_env(
        POLYGON_BASE_URL=simulator.url,
        POLYGON_API_KEY=SIM_KEY,
        BACKFILL_DEPTH_DAILY_DAYS="30",
        MDW_DATA_DIR=str(tmp_path / "data"),
    )
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(main, ["symbols", *args], catch_exceptions=False)

    return invoke


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_add_checks_the_provider_and_stores_the_symbol(mdw, committed_db):
    result = mdw("add", "msft", "--asset-class", "stock", "-t", "1h", "-t", "1d")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("added MSFT       stock  1h,1d ")
    assert rows(
        committed_db, "SELECT symbol, asset_class, timeframes, active FROM tracked_symbols"
    ) == [("MSFT", "stock", ["1h", "1d"], True)]


def test_add_refuses_a_ticker_the_provider_does_not_know(mdw, committed_db):
    result = mdw("add", "ZZZZ", "--asset-class", "stock")

    assert result.exit_code == 1
    assert result.output.startswith("Error: ZZZZ is not a ticker the market data provider knows")
    assert rows(committed_db, "SELECT symbol FROM tracked_symbols") == []


def test_add_twice_is_a_one_line_conflict(mdw):
    assert mdw("add", "AAPL", "--asset-class", "stock").exit_code == 0

    result = mdw("add", "AAPL", "--asset-class", "stock")

    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "AAPL" in result.output


def test_a_bad_symbol_names_the_argument_not_the_body_field(mdw):
    result = mdw("add", "x" * 40, "--asset-class", "stock")

    assert result.exit_code == 1
    assert "SYMBOL" in result.output
    assert "$." not in result.output


def test_list_show_update_remove(mdw, committed_db):
    with db.connect(committed_db) as conn, conn.transaction():
        make_symbol(conn, "AAPL")
        make_symbol(conn, "BTC", asset_class="crypto")
        make_bars(conn, "AAPL", daily_times(date(2025, 3, 3), 5))

    listed = mdw("list", "--json")
    shown = mdw("show", "AAPL")
    shown_json = mdw("show", "AAPL", "--json")
    updated = mdw("update", "AAPL", "-t", "1d", "-t", "1h")
    removed = mdw("remove", "BTC-USD")
    active = mdw("list")
    everything = mdw("list", "--inactive", "--asset-class", "crypto")

    assert [s["symbol"] for s in json.loads(listed.output)] == ["AAPL", "BTC"]
    assert shown.output.splitlines()[0].startswith("AAPL       stock  1d ")
    assert "  1d          5 bars  2025-03-03 .. 2025-03-07  validated 100.00%" in shown.output
    assert json.loads(shown_json.output)["stats"]["1d"]["record_count"] == 5
    assert updated.output.startswith("updated AAPL       stock  1h,1d ")
    assert removed.output == "deactivated BTC; its bars are kept\n"
    assert active.output.splitlines()[-1] == "1 symbol"
    assert everything.output.splitlines()[0].startswith(
        "BTC        crypto 1d               inactive"
    )
    assert mdw("update", "AAPL").exit_code == 2  # nothing to change: a usage error


def test_show_of_an_unknown_symbol_is_one_line(mdw):
    result = mdw("show", "NOPE")

    assert (result.exit_code, result.output) == (1, "Error: NOPE is not a tracked symbol\n")


def test_backfill_runs_now_and_prints_the_summary(mdw, committed_db, simulator):
    assert mdw("add", "AAPL", "--asset-class", "stock").exit_code == 0

    result = mdw("backfill", "AAPL")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("1 backfilled: 1 completed, 0 failed; ")
    (count,) = rows(committed_db, "SELECT count(*) FROM bars WHERE symbol = 'AAPL'")[0]
    assert count > 15
    assert rows(committed_db, "SELECT backfill_status FROM tracked_symbols") == [("completed",)]


# --- Options named as typed -------------------------------------------------------------------


def test_errors_name_the_option():
    assert (
        name_options("Invalid RFC3339 encoded datetime - at `$.expires_at`")
        == "Invalid RFC3339 encoded datetime - at --expires-at"
    )
    assert (
        name_options("Expected `str` - at `$.timeframes[2]`")
        == "Expected `str` - at --timeframes (value 3)"
    )
    assert name_options("too long - at `$.symbol`", {"symbol": "SYMBOL"}) == "too long - at SYMBOL"


def test_keys_restore_names_expires_at(committed_db):
    from tests.factories import make_key

    with db.connect(committed_db) as conn, conn.transaction():
        key = make_key(conn)
    runner = CliRunner()

    result = runner.invoke(
        main, ["keys", "restore", str(key.key.id), "--expires-at", "soon"], catch_exceptions=False
    )

    assert result.exit_code == 1
    assert result.output == "Error: Invalid RFC3339 encoded datetime - at --expires-at\n"


# --- Beside make run --------------------------------------------------------------------------


@pytest.fixture
def no_provider(monkeypatch, tmp_path) -> Path:
    """No provider settings at all, and a data directory of the test's own; whatever the CLI
    sets in the environment is undone."""
    for name in ("POLYGON_API_KEY", "POLYGON_API_KEY_SECRET_ARN", "POLYGON_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MDW_DATA_DIR", str(data_dir))
    # Restored by monkeypatch: the CLI writes the simulator's settings into os.environ.
    monkeypatch.setenv("POLYGON_BASE_URL", "")
    monkeypatch.setenv("POLYGON_API_KEY", "")
    container.reset()
    return data_dir


def test_the_cli_uses_the_simulator_make_run_started(no_provider, committed_db, simulator):
    write_state(
        no_provider,
        LocalServerState(
            pid=os.getpid(),
            url="http://127.0.0.1:8000",
            polygon_base_url=simulator.url,
            polygon_api_key=SIM_KEY,
        ),
    )
    assert oct(state_path(no_provider).stat().st_mode & 0o777) == "0o600"
    runner = CliRunner()

    result = runner.invoke(
        main, ["symbols", "add", "NVDA", "--asset-class", "stock"], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    assert os.environ["POLYGON_BASE_URL"] == simulator.url
    assert any(r.path == "/v3/reference/tickers/NVDA" for r in simulator.requests)


def test_a_real_provider_key_wins_over_the_state_file(no_provider, monkeypatch):
    write_state(
        no_provider,
        LocalServerState(
            pid=os.getpid(), url="u", polygon_base_url="http://sim", polygon_api_key="k"
        ),
    )
    monkeypatch.setenv("POLYGON_API_KEY", "real-key")
    container.reset()

    CliRunner().invoke(main, ["db", "--help"], catch_exceptions=False)

    assert os.environ["POLYGON_BASE_URL"] == ""
    assert get_settings().polygon_api_key == "real-key"


def test_a_stale_state_file_is_ignored_and_removed(no_provider):
    import subprocess
    import sys

    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    write_state(
        no_provider,
        LocalServerState(
            pid=int(exited.stdout), url="u", polygon_base_url="http://sim", polygon_api_key="k"
        ),
    )

    assert read_live_state(no_provider) is None
    assert not state_path(no_provider).exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--expires-at", "2001-01-01T00:00:00Z"], "Error: --expires-at must be in the future\n"),
        (["--rate-limit", "0"], "Error: Expected `int` >= 1 - at --rate-limit\n"),
        (
            ["--cidr", "10.0.0.1/8"],
            "Error: '10.0.0.1/8' is not a CIDR such as 203.0.113.0/24 (host bits must be zero)\n",
        ),
    ],
)
def test_keys_create_errors_name_options(committed_db, options, message):
    result = CliRunner().invoke(
        main, ["keys", "create", "typed", "--scope", "read", *options], catch_exceptions=False
    )

    assert (result.exit_code, result.output) == (1, message)
