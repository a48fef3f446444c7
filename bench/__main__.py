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
    parser.add_argument(
        "--write",
        metavar="DOC",
        help="also replace each report's block in DOC (e.g. docs/PERFORMANCE.md)",
    )
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
        if args.write:
            write_block(Path(args.write), name, report)
    return 0


def write_block(doc: Path, name: str, report: str) -> None:
    """Put `report` between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `doc`, so the
    numbers in the docs are the ones a run printed and the prose around them stays."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = doc.read_text()
    if start not in text or end not in text:
        print(f"{doc} has no {start} block; not written", file=sys.stderr)
        return
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{report.rstrip()}\n{end}{after}")


if __name__ == "__main__":
    sys.exit(main())
