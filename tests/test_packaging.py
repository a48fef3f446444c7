"""`pip install .` gives a working `mdw`: every third-party module the code imports is declared."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

from chalicelib.config import PROJECT_ROOT

# Chalice puts its own runtime module into the Lambda package; the API needs nothing else of it.
PROVIDED_BY_CHALICE = {"chalice"}


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower())
    return names


def _third_party_imports() -> set[str]:
    modules = set()
    for path in (PROJECT_ROOT / "chalicelib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {
        name
        for name in modules
        if name not in sys.stdlib_module_names and name not in {"chalicelib", "__future__"}
    }


def test_every_imported_distribution_is_declared():
    declared = {
        re.split(r"[\[=<>~!; ]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.requires("mdw") or []
    }
    distributions = metadata.packages_distributions()

    undeclared = {
        module: distributions.get(module)
        for module in _third_party_imports()
        if module not in PROVIDED_BY_CHALICE
        and not {name.lower() for name in distributions.get(module, [module])} & declared
    }

    assert undeclared == {}


def test_the_command_line_dependency_is_a_runtime_requirement_but_not_deployed():
    runtime = _requirement_names((PROJECT_ROOT / "requirements.txt").read_text())
    cli = _requirement_names((PROJECT_ROOT / "requirements-cli.txt").read_text())
    installed = {
        re.split(r"[\[=<>~!; ]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.requires("mdw") or []
        if "extra ==" not in requirement
    }

    assert cli == {"click"}
    assert not cli & runtime
    assert runtime | cli == installed
