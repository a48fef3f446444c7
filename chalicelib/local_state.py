"""What a running `make run` tells the `mdw` commands beside it: a small file under the data
directory with the server's address and, when `make run` started its own Polygon simulator, the
simulator's address and key. The CLI reads it only when no provider is configured, so a real
POLYGON_API_KEY always wins, and ignores it once the process that wrote it is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

FILE_NAME = "local-server.json"


class LocalServerState(msgspec.Struct, frozen=True):
    pid: int
    url: str
    polygon_base_url: str | None = None
    polygon_api_key: str | None = None


def state_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write_state(data_dir: Path, state: LocalServerState) -> Path:
    """Write the file readable by this user only (it holds the simulator's key)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(data_dir)
    partial = path.with_suffix(".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(msgspec.json.encode(state))
    partial.replace(path)
    return path


def remove_state(data_dir: Path, *, pid: int) -> None:
    """Remove the file if this process wrote it."""
    state = _read(state_path(data_dir))
    if state is not None and state.pid == pid:
        state_path(data_dir).unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> LocalServerState | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=LocalServerState)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def read_live_state(data_dir: Path) -> LocalServerState | None:
    """The running server's state; None when there is none or its writer has exited (a stale
    file from an unclean stop is removed)."""
    path = state_path(data_dir)
    state = _read(path)
    if state is None:
        return None
    if not process_alive(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state
