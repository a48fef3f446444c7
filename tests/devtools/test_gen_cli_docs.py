"""docs/CLI.md is generated from `mdw --help` and must not go stale."""

from __future__ import annotations

from devtools.gen_cli_docs import CLI_DOC, render


def test_cli_doc_is_current() -> None:
    assert CLI_DOC.read_text() == render(), (
        "docs/CLI.md is stale: run `python -m devtools.gen_cli_docs`"
    )


def test_every_operator_command_is_documented() -> None:
    text = render()

    for command in (
        "mdw bootstrap",
        "mdw db migrate",
        "mdw db status",
        "mdw db verify",
        "mdw backfill",
        "mdw keys create",
        "mdw keys rotate",
        "mdw keys audit",
    ):
        assert f"## `{command}`\n" in text
