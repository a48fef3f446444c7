"""`make run` end to end: bootstrap, the simulator, the first backfill, then a real
`chalice local` that serves the bars the printed curl example asks for."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import requests

from chalicelib.bootstrap import CORE_SYMBOLS
from devtools import run_local
from devtools.polygon_sim import PolygonSimulator
from tests.conftest import free_port, wait_for_port


@pytest.fixture
def laptop(committed_db, monkeypatch, set_env):
    """No provider key (so the simulator starts) and a short daily depth; the provider
    settings the launcher sets are undone after the test."""
    for name in ("POLYGON_API_KEY", "POLYGON_API_KEY_SECRET_ARN", "POLYGON_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    set_env(BACKFILL_DEPTH_DAILY_DAYS="40")
    return committed_db


def count(url, query):
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def test_make_run_backfills_then_serves_real_bars(laptop, monkeypatch, capsys):
    port = free_port()
    served = {}

    def serve_and_curl(command, *, cwd, env):
        """Start the real `chalice local` as the launcher asked, run the printed curl example."""
        printed = capsys.readouterr()
        served["stdout"], served["stderr"] = printed.out, printed.err
        curl = next(line for line in printed.out.splitlines() if "/api/v1/historical/" in line)
        words = shlex.split(curl)
        headers = dict([words[words.index("-H") + 1].split(": ", 1)])
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port, process=process)
            served["env"] = env
            served["response"] = requests.get(words[-1], headers=headers, timeout=10)
            served["simulator"] = requests.get(
                f"{env['POLYGON_BASE_URL']}/v3/reference/tickers/AAPL",
                headers={"Authorization": f"Bearer {env['POLYGON_API_KEY']}"},
                timeout=5,
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
        return 0

    monkeypatch.setattr(run_local.subprocess, "call", serve_and_curl)

    assert run_local.main(["--port", str(port)]) == 0

    out = served["stdout"]
    assert re.search(r"Polygon simulator on http://127\.0\.0\.1:\d+ ", out)
    assert "backfill: 15 core symbol timeframes to bring up to date" in out
    assert "15 backfilled: 15 completed, 0 failed" in out
    assert served["stderr"].count(" completed\n") == 15  # one progress line per unit
    assert served["env"]["DATABASE_URL"] == laptop
    # The child reached the same simulator, which was still running while it served.
    assert served["simulator"].status_code == 200
    response = served["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == "AAPL"
    assert body["count"] == len(body["bars"]) > 15
    assert count(laptop, "SELECT count(DISTINCT symbol) FROM bars") == len(CORE_SYMBOLS)


def test_a_second_make_run_fetches_nothing(laptop, monkeypatch, capsys):
    monkeypatch.setattr(run_local.subprocess, "call", lambda *args, **kwargs: 0)
    run_local.main(["--port", str(free_port())])
    runs = count(laptop, "SELECT count(*) FROM backfill_runs")
    capsys.readouterr()

    assert run_local.main(["--port", str(free_port())]) == 0

    out = capsys.readouterr().out
    assert "backfill: the core symbols are up to date" in out
    assert "An admin key already exists" in out
    assert '-H "Authorization: Bearer $MDW_KEY"' in out
    assert count(laptop, "SELECT count(*) FROM backfill_runs") == runs == 15


def test_a_provider_key_means_no_simulator_of_our_own(laptop, monkeypatch, capsys, set_env):
    with PolygonSimulator(api_key="provider-key-0a9f") as provider:
        provider_url = provider.url
        set_env(POLYGON_API_KEY="provider-key-0a9f", POLYGON_BASE_URL=provider_url)
        monkeypatch.setattr(run_local.subprocess, "call", lambda *args, **kwargs: 0)
        monkeypatch.setattr(run_local, "start_simulator", pytest.fail)

        assert run_local.main(["--port", str(free_port())]) == 0

        fetched = {r.path.split("/")[4] for r in provider.requests if r.path.startswith("/v2/")}
    printed = capsys.readouterr()
    assert f"Polygon: {provider_url}" in printed.out
    assert "15 backfilled: 15 completed, 0 failed" in printed.out
    assert len(fetched) == 15
    assert "provider-key-0a9f" not in printed.out + printed.err
