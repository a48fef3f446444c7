"""Every ```sh block of README.md and docs/*.md runs, as written, against a live `make run` (its
own process, a fresh data directory), with `MDW_URL` and `MDW_KEY` set as `make run` prints
them, and its outcome is what the doc says.

What a block must give is written after it as `<!-- expect: ... -->`, one item per `curl` in the
block, separated by `;`: the HTTP status and the top-level JSON fields the doc names
(`200 symbols count`). A block of commands that are not curl says `<!-- expect: exit 0 "text"
-->` (its exit status, and text its output must contain). A block with no expectation must
exit 0 with every curl answered below 400. Blocks fenced ```sh no-run are not run (the prose
beside them says why). Blocks run in the order of the files below, and within a file in order.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib.config import PROJECT_ROOT
from tests.test_launcher import Launch, launcher_env

# These run first, in this order: the API reference deactivates and reactivates a symbol the
# others read. Every other doc follows, so a new page's examples are run too.
FIRST = ["README.md", "docs/API_KEY_MANAGEMENT.md", "docs/CRYPTO_SYMBOLS.md", "docs/API.md"]
DOCS = FIRST + sorted(
    str(path.relative_to(PROJECT_ROOT))
    for path in (PROJECT_ROOT / "docs").glob("*.md")
    if str(path.relative_to(PROJECT_ROOT)) not in FIRST
)

_BLOCK = re.compile(
    r"^```(?P<info>sh[^\n]*)\n(?P<code>.*?)^```[ \t]*\n(?:\s*<!-- expect: (?P<expect>.*?) -->)?",
    re.MULTILINE | re.DOTALL,
)
_STATUS_MARK = "\n__mdw_status__"

# Each curl of a block goes through this function: the real curl, its status and body recorded
# in order, the body (only) printed as curl would print it.
_PRELUDE = r"""
set -euo pipefail
__calls=0
curl() {
  __calls=$((__calls + 1))
  command curl -sS -w '\n__mdw_status__%{http_code}' "$@" > "$MDW_DOC_CALLS/$__calls"
  sed -e '/^__mdw_status__[0-9]*$/d' "$MDW_DOC_CALLS/$__calls"
}
"""


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    code: str
    expect: str | None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def examples() -> list[Example]:
    found = []
    for doc in DOCS:
        text = (PROJECT_ROOT / doc).read_text()
        for match in _BLOCK.finditer(text):
            info = match.group("info").split()
            if info[0] != "sh" or "no-run" in info[1:]:
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append(Example(doc, line, match.group("code"), match.group("expect")))
    return found


EXAMPLES = examples()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Launch, dict[str, str]]]:
    """`make run` on a fresh data directory, and the environment a reader's shell would have:
    MDW_URL and MDW_KEY as it printed them, `.venv/bin` on PATH."""
    root = Path(tempfile.mkdtemp(prefix="mdw-docs-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir()
    # The default history depth, as a reader's `make run` has it.
    env = launcher_env(data_dir)
    env.pop("BACKFILL_DEPTH_DAILY_DAYS")
    launch = Launch(data_dir, plan_every=5, env=env)
    try:
        launch.wait_until_serving()
        env = dict(env)
        env.update(
            MDW_URL=launch.url,
            MDW_KEY=launch.admin_key(),
            PATH=f"{PROJECT_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        )
        yield launch, env
        launch.stop(15)  # SIGTERM
    finally:
        launch.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_the_docs_have_runnable_examples():
    assert len(EXAMPLES) >= 10
    assert {example.doc for example in EXAMPLES} >= {"README.md", "docs/API.md"}


def test_every_example_uses_the_one_variable_convention():
    """MDW_URL and MDW_KEY, in every block (runnable or not): no other name for them."""
    text = "\n".join((PROJECT_ROOT / doc).read_text() for doc in DOCS)
    blocks = "\n".join(m.group("code") for m in _BLOCK.finditer(text))
    assert re.findall(r"\$\{?(KEY|ADMIN|MDW_ADMIN_KEY|MDW|ADMIN_KEY|URL)\b", blocks) == []
    assert "localhost:8000" not in blocks


def parse_expectations(expect: str | None) -> list[tuple[str, list[str]]]:
    if expect is None:
        return []
    return [(words[0], words[1:]) for words in (shlex.split(item) for item in expect.split(";"))]


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_the_example_gives_what_the_doc_says(server, example, tmp_path):
    launch, env = server
    calls = tmp_path / "calls"
    calls.mkdir()
    result = subprocess.run(
        ["bash", "-c", _PRELUDE + example.code],
        cwd=PROJECT_ROOT,
        env={**env, "MDW_DOC_CALLS": str(calls)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    answers = []
    for index in range(1, len(list(calls.iterdir())) + 1):
        raw = (calls / str(index)).read_text()
        body, _, status = raw.rpartition(_STATUS_MARK)
        answers.append((int(status), body))
    context = (
        f"{example}\n{example.code}\n"
        f"statuses: {[status for status, _ in answers]}\n"
        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    )

    expectations = parse_expectations(example.expect)
    if expectations and expectations[0][0] == "exit":
        (_, expected), *_ = expectations
        code, texts = int(expected[0]), expected[1:]
        assert result.returncode == code, context
        for text in texts:
            assert text in result.stdout + result.stderr, context
        return
    assert result.returncode == 0, context
    if not expectations:
        assert [status for status, _ in answers if status >= 400] == [], context
        return
    assert [status for status, _ in answers] == [int(s) for s, _ in expectations], context
    for (_, body), (_, fields) in zip(answers, expectations, strict=True):
        if not fields:
            continue
        payload = json.loads(body)
        missing = [field for field in fields if field not in payload]
        assert missing == [], context
