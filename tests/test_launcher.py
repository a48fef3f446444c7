"""`make run`'s launcher as a user starts it: its own process on a fresh data directory (its own
embedded PostgreSQL and simulator), a minute of requests, a new ticker backfilled by the local
scheduler, the `mdw` commands beside it, and every stop signal stopping all it started."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from chalicelib.config import PROJECT_ROOT
from tests.conftest import free_port

# The bar: a minute of requests, new and keep-alive connections, with no failure.
LOAD_SECONDS = 60.0
STOP_WITHIN_SECONDS = 10.0
NEW_TICKER = "JPM"  # outside the core symbols the first backfill fetches
# A new symbol's bars answer 404 with its backfill status until its first backfill completes.
BACKFILL_UNDER_WAY = ("pending", "in_progress")


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """A fresh data directory, shared by this module's launches (one initdb). Outside pytest's
    private temp dirs: the embedded server's own user must be able to reach it."""
    path = Path(tempfile.mkdtemp(prefix="mdw-launch-"))
    path.chmod(0o755)
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def launcher_env(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POLYGON_", "DATABASE_", "TEST_DATABASE"))
    }
    # A short history keeps the first backfill quick; nothing else is configured, as on a
    # fresh laptop.
    env.update(MDW_DATA_DIR=str(data_dir), BACKFILL_DEPTH_DAILY_DAYS="400")
    return env


class Launch:
    """One `python -m devtools.run_local` process and what it printed."""

    def __init__(
        self,
        data_dir: Path,
        *,
        plan_every: float = 2.0,
        env: dict[str, str] | None = None,
        under_a_shell: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir.parent / f"launch-{self.port}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        command = [
            sys.executable,
            "-m",
            "devtools.run_local",
            "--port",
            str(self.port),
            "--plan-every",
            str(plan_every),
        ]
        if under_a_shell:
            # As make runs it: a parent process that waits for the launcher.
            command = ["sh", "-c", f"{shlex.join(command)}; true"]
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env or launcher_env(data_dir),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the launcher exited early:\n{self.output}")
            if "stop with Ctrl-C" in self.output:
                return
            time.sleep(0.2)
        raise AssertionError(f"the launcher did not start within {timeout}s:\n{self.output}")

    def admin_key(self) -> str:
        exported = next(line for line in self.output.splitlines() if "export MDW_URL=" in line)
        return dict(word.split("=", 1) for word in shlex.split(exported)[1:])["MDW_KEY"]

    def postgres_pid(self) -> int:
        return int((self.data_dir / "pg" / "postmaster.pid").read_text().split()[0])

    def stop(self, signum: int) -> float:
        """Send `signum`; the seconds it took the launcher to exit (it must exit with 0)."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_WITHIN_SECONDS + 5)
        finally:
            self.log.close()
        assert code == 0, self.output
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_not_running(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(pid)


def request(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    key: str,
    body: dict[str, object] | None = None,
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"}
    payload = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        payload = json.dumps(body).encode()
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def mdw(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An `mdw` command beside the server, with no settings but the data directory."""
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", *args],
        cwd=PROJECT_ROOT,
        env=launcher_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_run_serves_a_minute_schedules_a_new_ticker_and_stops_on_sigterm(data_dir):
    launch = Launch(data_dir)
    try:
        launch.wait_until_serving()
        key = launch.admin_key()
        postgres = launch.postgres_pid()
        assert (data_dir / "local-server.json").exists()
        keep_alive = http.client.HTTPConnection("127.0.0.1", launch.port, timeout=10)
        status, _ = request(
            keep_alive,
            "POST",
            "/api/v1/admin/symbols",
            key,
            {"symbol": NEW_TICKER, "asset_class": "stock"},
        )
        assert status == 201

        bars_path = f"/api/v1/historical/{NEW_TICKER}?start=2025-01-01&limit=5000"
        year_path = "/api/v1/historical/AAPL?start=2025-01-01&end=2025-12-31&limit=5000"
        failures: list[str] = []
        served = {"new": 0, "keep-alive": 0}
        new_ticker_bars = 0
        started = time.monotonic()
        while time.monotonic() - started < LOAD_SECONDS:
            fresh = http.client.HTTPConnection("127.0.0.1", launch.port, timeout=10)
            for kind, connection in (("new", fresh), ("keep-alive", keep_alive)):
                path = bars_path if new_ticker_bars == 0 else year_path
                try:
                    status, body = request(connection, "GET", path, key)
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(f"{kind}: {type(exc).__name__}: {exc}")
                    continue
                waiting = (
                    path == bars_path
                    and status == 404
                    and body["error"]["details"].get("backfill_status") in BACKFILL_UNDER_WAY
                )
                if status != 200 and not waiting:
                    failures.append(f"{kind}: {status} {body}")
                    continue
                served[kind] += 1
                if waiting:
                    # Until its first backfill completes, a new symbol says so.
                    continue
                if path == bars_path:
                    new_ticker_bars = body["count"]
                    arrived_after = time.monotonic() - started
            fresh.close()
            time.sleep(0.05)
        keep_alive.close()

        assert failures == []
        assert served["new"] > 100
        assert served["keep-alive"] > 100
        # The scheduler planned the new ticker's first backfill and the worker ran it.
        assert new_ticker_bars > 200
        assert arrived_after < 60
        done = re.search(
            rf"worker: symbol:{NEW_TICKER}/1d/\S+ done, ([\d,]+) bars written", launch.output
        )
        assert done, launch.output
        # Every bar is stored; the read above counts the validated ones.
        written = int(done.group(1).replace(",", ""))
        assert written >= new_ticker_bars

        # The CLI beside it: no settings, the same database and the launcher's simulator.
        backfill = mdw(data_dir, "backfill", "--symbol", NEW_TICKER)
        assert backfill.returncode == 0, backfill.stderr
        assert "1 backfilled: 1 completed, 0 failed" in backfill.stdout
        shown = mdw(data_dir, "symbols", "show", NEW_TICKER, "--json")
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["backfill_status"] == "completed"
        # The CLI's backfill continued from the newest bar: the same bars, none twice.
        assert detail["stats"]["1d"]["record_count"] == written

        seconds = launch.stop(signal.SIGTERM)
    finally:
        launch.kill()

    assert seconds < STOP_WITHIN_SECONDS
    assert wait_not_running(postgres, timeout=2)
    assert not (data_dir / "local-server.json").exists()
    assert not any(
        str(data_dir) in " ".join(process.info["cmdline"] or [])
        for process in psutil.process_iter(["cmdline"])
        if process.info["cmdline"] and running(process.pid)
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_a_killed_launcher_is_recovered_and_each_signal_stops_everything(data_dir, signum):
    """After SIGKILL (the embedded PostgreSQL left running, its handle file naming a dead
    process) the next launch adopts the server and `signum` stops it all."""
    first = Launch(data_dir, plan_every=60)
    try:
        first.wait_until_serving()
        postgres = first.postgres_pid()
        first.kill()
        assert running(postgres)  # left behind, as after a lost terminal

        second = Launch(data_dir, plan_every=60)
        try:
            second.wait_until_serving()
            assert f"dropped handles of stopped processes [{first.process.pid}]" in second.output
            assert second.postgres_pid() == postgres
            connection = http.client.HTTPConnection("127.0.0.1", second.port, timeout=10)
            connection.request("GET", "/health")
            health = connection.getresponse()
            assert (health.status, json.loads(health.read())["database"]) == (200, "ok")
            connection.close()
            seconds = second.stop(signum)
        finally:
            second.kill()
    finally:
        first.kill()

    assert seconds < STOP_WITHIN_SECONDS
    assert wait_not_running(postgres, timeout=2)


def test_the_launcher_stops_when_what_started_it_is_gone(data_dir):
    """`kill <make's pid>` or a lost terminal may reach only make, which does not pass every
    signal on: the launcher notices its parent is gone and stops everything."""
    launch = Launch(data_dir, plan_every=60, under_a_shell=True)
    try:
        launch.wait_until_serving()
        postgres = launch.postgres_pid()
        launcher = json.loads((data_dir / "local-server.json").read_text())["pid"]
        assert launcher != launch.process.pid

        launch.process.kill()  # the parent only
        launch.process.wait()

        assert wait_not_running(launcher, timeout=STOP_WITHIN_SECONDS)
    finally:
        launch.kill()
        if "launcher" in locals() and running(launcher):
            os.kill(launcher, signal.SIGKILL)  # never leave it behind, whatever failed
    assert wait_not_running(postgres, timeout=2)
    assert "the process that started make run has exited; stopping" in launch.output
