"""Cold import of the API (`import app`) against its floor, `import chalice, psycopg`.

Each sample is a new interpreter, so nothing is cached in the process; the two commands run
alternately so machine noise hits both alike. Target: ratio ≤ 1.3.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from chalicelib.config import PROJECT_ROOT

BASELINE = "import chalice, psycopg"
SUBJECT = "import app"
ROUNDS = 25


def _time(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)
    return time.perf_counter() - started


def _startup() -> float:
    return _time("pass")


def run() -> str:
    for code in (BASELINE, SUBJECT):
        _time(code)  # warm the OS file cache
    startup, baseline, subject = [], [], []
    for _ in range(ROUNDS):
        startup.append(_startup())
        baseline.append(_time(BASELINE))
        subject.append(_time(SUBJECT))
    interpreter = statistics.median(startup)
    base = statistics.median(baseline)
    app = statistics.median(subject)
    ratio = app / base
    leaked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app; print(','.join(sorted(m for m in ('boto3', 'requests', "
            "'pgserver', 'holidays') if m in sys.modules)) or '-')",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return "\n".join(
        [
            "## Cold import of the API",
            "",
            f"Median of {ROUNDS} fresh interpreters each (interpreter start alone: "
            f"{interpreter * 1e3:.0f} ms, included in both).",
            "",
            "| what | median |",
            "|---|---|",
            f"| `{BASELINE}` (baseline) | {base * 1e3:.0f} ms |",
            f"| `{SUBJECT}` | {app * 1e3:.0f} ms |",
            f"| ratio | **{ratio:.2f}×** (target ≤ 1.3×) |",
            "",
            f"Heavy modules loaded by `import app` (boto3, requests, pgserver, holidays): {leaked}",
        ]
    )
