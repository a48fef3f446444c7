"""`make run` in this process: bootstrap, the simulator, the first backfill, then the local
server that serves the bars the printed curl example asks for, and the state file the `mdw`
commands beside it read."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import requests

from chalicelib.bootstrap import CORE_SYMBOLS
from chalicelib.local_state import state_path
from devtools import run_local
from devtools.polygon_sim import PolygonSimulator
from tests.conftest import free_port


@pytest.fixture
def laptop(committed_db, monkeypatch, set_env, tmp_path):
    """No provider key (so the simulator starts), a short daily depth and a data directory of
    the test's own; the provider settings the launcher sets are undone after the test."""
    for name in ("POLYGON_API_KEY", "POLYGON_API_KEY_SECRET_ARN", "POLYGON_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    set_env(BACKFILL_DEPTH_DAILY_DAYS="40", MDW_DATA_DIR=str(tmp_path / "data"))
    return committed_db


def printed_example(out: str) -> tuple[str, dict[str, str]]:
    """The printed curl example for bars, with MDW_URL and MDW_KEY from the export line."""
    exported = next(line for line in out.splitlines() if line.strip().startswith("export "))
    variables = dict(word.split("=", 1) for word in shlex.split(exported)[1:])
    curl = next(line for line in out.splitlines() if "/api/v1/historical/" in line)
    words = shlex.split(
        curl.replace("$MDW_URL", variables["MDW_URL"]).replace("$MDW_KEY", variables["MDW_KEY"])
    )
    headers = dict([words[words.index("-H") + 1].split(": ", 1)])
    return words[-1], headers


def count(url, query):
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def test_make_run_backfills_then_serves_real_bars(laptop, monkeypatch, capsys, tmp_path):
    port = free_port()
    served = {}

    def use_the_server(server):
        """While it serves: run the printed curl example and read the state file."""
        printed = capsys.readouterr()
        served["stdout"], served["stderr"] = printed.out, printed.err
        url, headers = printed_example(printed.out)
        served["response"] = requests.get(url, headers=headers, timeout=10)
        served["state"] = json.loads(state_path(tmp_path / "data").read_text())
        served["simulator"] = requests.get(
            f"{served['state']['polygon_base_url']}/v3/reference/tickers/AAPL",
            headers={"Authorization": f"Bearer {served['state']['polygon_api_key']}"},
            timeout=5,
        )

    monkeypatch.setattr(run_local, "wait_for_stop", use_the_server)

    assert run_local.main(["--port", str(port), "--log-format", "human"]) == 0

    out = served["stdout"]
    assert re.search(r"Polygon simulator on http://127\.0\.0\.1:\d+ ", out)
    assert "backfill: 15 core symbol timeframes to bring up to date" in out
    assert "15 backfilled: 15 completed, 0 failed" in out
    assert f"Serving on http://127.0.0.1:{port}\n" in out
    assert f"  console: http://127.0.0.1:{port}/console (sign in with the key); " in out
    assert "scheduler: the backfill planner runs every 20 s for stocks and crypto" in out
    assert served["stderr"].count(" completed\n") == 15  # one progress line per unit
    assert served["state"]["url"] == f"http://127.0.0.1:{port}"
    # The state file named the simulator, which was still running while the server served.
    assert served["simulator"].status_code == 200
    response = served["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == "AAPL"
    assert body["count"] == len(body["bars"]) > 15
    assert count(laptop, "SELECT count(DISTINCT symbol) FROM bars") == len(CORE_SYMBOLS)
    # Stopped: the state file is gone, and the request was one human line.
    assert not state_path(tmp_path / "data").exists()
    request_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d GET /api/v1/historical/AAPL\?start=\S+ 200 \d+\.\d ms mdw_\w{8}",
        request_line,
    )


def test_a_second_make_run_fetches_nothing(laptop, monkeypatch, capsys):
    monkeypatch.setattr(run_local, "wait_for_stop", lambda server: None)
    run_local.main(["--port", str(free_port())])
    runs = count(laptop, "SELECT count(*) FROM backfill_runs")
    capsys.readouterr()

    assert run_local.main(["--port", str(free_port())]) == 0

    out = capsys.readouterr().out
    assert "backfill: the core symbols are up to date" in out
    assert "An admin key already exists" in out
    assert "MDW_KEY=<your admin key>" in out
    assert '-H "Authorization: Bearer $MDW_KEY"' in out
    assert count(laptop, "SELECT count(*) FROM backfill_runs") == runs == 15


def test_a_busy_port_is_one_line_and_nothing_starts(laptop, capsys, monkeypatch):
    monkeypatch.setattr(run_local, "serve", pytest.fail)
    with run_local.bind_port("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]

        assert run_local.main(["--port", str(port)]) == 2

    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        f"mdw: port {port} on 127.0.0.1 is already in use; "
        f"pick another with `make run PORT={port + 1}`\n"
    )


def test_stale_handles_of_exited_processes_are_dropped(tmp_path):
    import subprocess
    import sys

    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(exited.stdout)
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead_pid, 1]))

    assert run_local.prune_stale_handles(tmp_path) == [dead_pid]
    assert json.loads(handles.read_text()) == [1]
    assert run_local.prune_stale_handles(tmp_path) == []


def test_a_provider_key_means_no_simulator_of_our_own(laptop, monkeypatch, capsys, set_env):
    with PolygonSimulator(api_key="provider-key-0a9f") as provider:
        provider_url = provider.url
        set_env(POLYGON_API_KEY="provider-key-0a9f", POLYGON_BASE_URL=provider_url)
        monkeypatch.setattr(run_local, "wait_for_stop", lambda server: None)
        monkeypatch.setattr(run_local, "start_simulator", pytest.fail)

        assert run_local.main(["--port", str(free_port())]) == 0

        fetched = {r.path.split("/")[4] for r in provider.requests if r.path.startswith("/v2/")}
    printed = capsys.readouterr()
    assert f"Polygon: {provider_url}" in printed.out
    assert "15 backfilled: 15 completed, 0 failed" in printed.out
    assert len(fetched) == 15
    assert "provider-key-0a9f" not in printed.out + printed.err


def test_log_format_json_writes_lambdas_json_lines(laptop, monkeypatch, capsys):
    from chalicelib import db
    from tests.factories import make_key

    with db.connect(laptop) as conn, conn.transaction():
        key = make_key(conn).raw_key

    def one_request(server):
        capsys.readouterr()
        response = requests.get(
            f"{server.url}/api/v1/symbols", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert response.status_code == 200

    monkeypatch.setattr(run_local, "wait_for_stop", one_request)

    assert run_local.main(["--port", str(free_port()), "--log-format", "json"]) == 0

    # Every line is JSON (the scheduler's first plan may have logged too), the request's among
    # them, and no human request line.
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    requests_logged = [r for r in records if r["event"] == "request"]
    assert [(r["path"], r["status_code"]) for r in requests_logged] == [("/api/v1/symbols", 200)]
    assert key not in json.dumps(records)


class FakeChild:
    """A launcher child that runs until signalled, or exits by itself with `exits_with`."""

    def __init__(self, exits_with=None):
        self.returncode = exits_with
        self.signals = []

    def poll(self):
        return self.returncode

    def send_signal(self, signum):
        self.signals.append(signum)
        self.returncode = 0

    def wait(self):
        return self.returncode


def test_make_dev_restarts_on_a_source_change_only(monkeypatch, capsys):
    import signal

    children = [FakeChild(), FakeChild(exits_with=3)]
    started = []

    def popen(command, cwd):
        started.append(command)
        return children[len(started) - 1]

    # The second look sees a changed source file; after that nothing changes.
    snapshots = iter([{"a.py": 1.0}, {"a.py": 2.0}, {"a.py": 2.0}, {"a.py": 2.0}, {"a.py": 2.0}])
    monkeypatch.setattr(run_local, "_snapshot", lambda: next(snapshots))
    monkeypatch.setattr(run_local.subprocess, "Popen", popen)

    code = run_local.main(["--port", "8123", "--reload"])

    assert code == 3  # the second child exited by itself (as on a busy port): so does make dev
    assert [command[1:] for command in started] == [
        ["-m", "devtools.run_local", "--port", "8123"]
    ] * 2
    assert children[0].signals == [signal.SIGTERM]
    assert capsys.readouterr().out == "make dev: a source file changed; restarting\n"


def test_make_dev_never_watches_the_data_directory():
    watched = list(run_local.source_files())

    assert any(path.name == "app.py" for path in watched)
    assert any(path.suffix == ".sql" for path in watched)
    assert not [path for path in watched if ".data" in path.parts or ".venv" in path.parts]
