"""The Lambda package: its size, and each function's cold import from the unzipped
`deployment.zip` on Python 3.12, against `import chalice, psycopg` from the same folder.

As in Lambda, each sample is a fresh interpreter whose path holds only the unzipped package
(`-I -S`: no site-packages), importing the module the function's `Handler` names. The commands
run in turn, round after round, so machine noise hits all alike. Needs `make package` first
(`make bench` builds it). Target: the authorizer's cold import ≤ 1.3× the baseline.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from chalicelib.config import PROJECT_ROOT

BUILD = PROJECT_ROOT / "build" / "package"
BASELINE = "chalice, psycopg"
ROUNDS = 21
AUTHORIZER = "chalicelib.keys.authorizer.api_key_authorizer"


def _lambda_python() -> str:
    configured = os.environ.get("LAMBDA_PYTHON")
    if configured:
        return configured
    for candidate in sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3")):
        return str(candidate)
    return "python3.12"


def _import_command(python: str, task_root: Path, module: str) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(task_root)!r}); import {module}"
    return [python, "-I", "-S", "-c", code]


def _time(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def run() -> str:
    archive = BUILD / "deployment.zip"
    if not archive.exists():
        raise SystemExit("no build/package/deployment.zip: run `make package` first")
    template = json.loads((BUILD / "sam.json").read_text())
    handlers = sorted(
        {
            resource["Properties"]["Handler"]
            for resource in template["Resources"].values()
            if resource["Type"] == "AWS::Serverless::Function"
        }
    )
    modules = sorted({handler.rpartition(".")[0] for handler in handlers})
    python = _lambda_python()
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_FUNCTION_NAME": "mdw-bench", "TZ": ":UTC"}
    with tempfile.TemporaryDirectory() as folder:
        task_root = Path(folder)
        with zipfile.ZipFile(archive) as package:
            package.extractall(task_root)
        unzipped = _size(task_root)
        largest = sorted(
            (
                (_size(path) if path.is_dir() else path.stat().st_size, path.name)
                for path in task_root.iterdir()
            ),
            reverse=True,
        )[:6]
        commands = {name: _import_command(python, task_root, name) for name in [BASELINE, *modules]}
        for command in commands.values():
            _time(command, env)  # warm the OS file cache
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(ROUNDS):
            for name, command in commands.items():
                samples[name].append(_time(command, env))
        version = subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians[BASELINE]
    lines = [
        "## The Lambda package",
        "",
        f"`deployment.zip`: {_mb(archive.stat().st_size)}; unzipped: {_mb(unzipped)} "
        f"(largest: {', '.join(f'{name} {_mb(size)}' for size, name in largest)}).",
        "",
        f"Cold import on Python {version} from the unzipped package, median of {ROUNDS} fresh "
        "interpreters each (interpreter start included in all):",
        "",
        "| handler module | functions | median | ratio to baseline |",
        "|---|---|---|---|",
        f"| `import {BASELINE}` (baseline) | | {medians[BASELINE] * 1e3:.0f} ms | 1.00× |",
    ]
    for module in modules:
        functions = ", ".join(
            f"`{h.rpartition('.')[2]}`" for h in handlers if h.rpartition(".")[0] == module
        )
        ratio = medians[module] / base
        target = " (target ≤ 1.3×)" if AUTHORIZER.startswith(module + ".") else ""
        lines.append(
            f"| `{module}` | {functions} | {medians[module] * 1e3:.0f} ms | "
            f"**{ratio:.2f}×**{target} |"
        )
    return "\n".join(lines)
