"""Write docs/CLI.md from the `mdw` command group's own `--help`, so the reference cannot drift.

python -m devtools.gen_cli_docs          # rewrite docs/CLI.md
python -m devtools.gen_cli_docs --check  # exit 1 when docs/CLI.md is stale (CI, tests)
"""

from __future__ import annotations

import argparse
import sys

import click
from click.testing import CliRunner

from chalicelib.cli import main as mdw
from chalicelib.config import PROJECT_ROOT
from devtools.generated import write_or_check

CLI_DOC = PROJECT_ROOT / "docs" / "CLI.md"
INTRO = """# Command line reference

`mdw` is installed into `.venv` by `make run` and `make test` (`.venv/bin/mdw`). It works on the
database named by `DATABASE_URL` (or the embedded one), with the same code the API and the
Lambda functions run. Errors are one line on stderr with a non-zero exit, never a traceback.

Generated from `mdw --help` by `python -m devtools.gen_cli_docs`; a test fails when it is stale.
"""


def _commands(group: click.Group, path: list[str]) -> list[list[str]]:
    found = [path]
    context = click.Context(group, info_name=path[-1])
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            found += _commands(command, [*path, name])
        elif command is not None:
            found.append([*path, name])
    return found


def render() -> str:
    runner = CliRunner()
    sections = [INTRO]
    for path in _commands(mdw, ["mdw"]):
        result = runner.invoke(mdw, [*path[1:], "--help"], prog_name="mdw", terminal_width=100)
        sections.append(f"## `{' '.join(path)}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.gen_cli_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when docs/CLI.md is stale")
    args = parser.parse_args(argv)
    return write_or_check(
        CLI_DOC, render(), command="python -m devtools.gen_cli_docs", check=args.check
    )


if __name__ == "__main__":
    sys.exit(main())
