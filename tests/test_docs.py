"""The docs cannot drift from the code they describe."""

from __future__ import annotations

import re

from chalicelib.config import PROJECT_ROOT

CONFIG_SOURCE = (PROJECT_ROOT / "chalicelib" / "config.py").read_text()
SETTING_NAMES = sorted(set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', CONFIG_SOURCE)))
DOCS_TEXT = "\n".join(
    path.read_text() for path in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]
)


def test_settings_are_found_in_config():
    assert "DATABASE_URL" in SETTING_NAMES
    assert "AUTH_CACHE_TTL_SECONDS" in SETTING_NAMES


def test_every_setting_is_documented():
    undocumented = [name for name in SETTING_NAMES if f"`{name}`" not in DOCS_TEXT]

    assert undocumented == []


def test_readme_links_point_at_existing_docs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)\)", readme)

    assert targets
    assert [t for t in targets if not (PROJECT_ROOT / t).is_file()] == []
