"""A PostgreSQL server process of a test's own, from the embedded distribution's binaries: for
what the shared test servers cannot show (password authentication, stopping, freezing).

PostgreSQL refuses to run as root; as root (CI), the server runs as the unprivileged system user
the embedded distribution uses for the same reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_for_port

# Found without importing pgserver, whose import has side effects (runtime directories).
_PGSERVER = find_spec("pgserver")
assert _PGSERVER is not None
assert _PGSERVER.origin is not None
BIN = Path(_PGSERVER.origin).parent / "pginstall" / "bin"
SYSTEM_USER = "pgserver"


def _run_as() -> dict[str, Any]:
    if os.getuid() != 0:
        return {}
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True)
    return {"user": SYSTEM_USER}


class PostgresProcess:
    """initdb into a private temporary folder, then `postgres` on a free port of 127.0.0.1."""

    def __init__(self, *, superuser_password: str | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mdw-pg-"))
        self.data_dir = self.base / "data"
        self.port = free_port()
        self._as = _run_as()
        if self._as:
            shutil.chown(self.base, user=SYSTEM_USER, group=SYSTEM_USER)
        command = [str(BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--no-sync"]
        if superuser_password is not None:
            password_file = self.base / "password"
            password_file.write_text(superuser_password)
            if self._as:
                shutil.chown(password_file, user=SYSTEM_USER)
            command += ["--auth=scram-sha-256", f"--pwfile={password_file}"]
        else:
            command += ["--auth=trust"]
        subprocess.run(command, check=True, capture_output=True, timeout=120, **self._as)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresProcess:
        self.process = subprocess.Popen(
            [
                str(BIN / "postgres"),
                *("-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1"),
                *("-k", str(self.base), "-c", "fsync=off"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
            **self._as,
        )
        wait_for_port(self.port, process=self.process)
        ready = [str(BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + 30
        while subprocess.run(ready, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not become ready")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(
        self, *, user: str = "postgres", password: str | None = None, dbname: str = "postgres"
    ) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"
