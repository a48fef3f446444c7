"""`make bench` / `python -m bench [NAME ...]`: run the benchmarks and print their reports.

Each `bench/bench_<name>.py` defines `run() -> str`, a Markdown section with its numbers, the
baseline it was compared with, and the target. docs/PERFORMANCE.md records the latest run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import sys
import time
from pathlib import Path


def available() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(folder)])
        if info.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"which to run (default all): {available()}")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.perf_counter()
        # What the code under measurement logs (JSON lines on stdout) goes to stderr, so stdout
        # carries only the reports.
        with contextlib.redirect_stdout(sys.stderr):
            report = module.run()
        print(report.rstrip())
        print(f"\n_({name}: {time.perf_counter() - started:.1f} s)_\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
