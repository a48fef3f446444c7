"""Write docs/API.md from the app's OpenAPI document: every operation with its parameters,
bodies, errors and a curl example.

    python -m devtools.gen_api_docs          # rewrite docs/API.md
    python -m devtools.gen_api_docs --check  # exit 1 when docs/API.md is stale (CI, tests)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib.config import PROJECT_ROOT
from devtools.generated import write_or_check

API_DOC = PROJECT_ROOT / "docs" / "API.md"
# The docs' convention (README, "Using the API"): MDW_URL and MDW_KEY, as `make run` prints them.
EXAMPLE_HOST = "$MDW_URL"

# Example values for curl lines: what a reader would plausibly type. The examples run in the
# order of this document against a fresh `make run` (tests/test_docs_examples.py).
_EXAMPLE_PATH_VALUES = {
    "symbol": "AAPL",
    "ticker": "AAPL",
    "multiplier": "1",
    "timespan": "week",
    "from": "2024-01-02",
    "to": "2024-03-28",
    "date": "2024-03-28",
}
_EXAMPLE_QUERIES = {
    "/api/v1/historical/{symbol}": "?timeframe=1d&start=2024-01-02&end=2024-03-28",
    "/api/v1/admin/symbols": "?active=true",
    "/v3/reference/splits": "?ticker=AAPL",
    "/api/v1/latest": "?symbols=AAPL,MSFT,SPY&timeframe=1d",
    "/api/v1/bars": "?symbols=AAPL,MSFT,SPY&timeframe=1d&start=2024-01-02&end=2024-03-28",
}
_EXAMPLE_BODIES = {
    ("POST", "/api/v1/admin/symbols"): {
        "symbol": "IBM",
        "asset_class": "stock",
        "timeframes": ["1d", "1h"],
    },
    ("POST", "/api/v1/admin/api-keys"): {"name": "notebook", "scopes": ["read"]},
    ("PUT", "/api/v1/admin/api-keys/{key_id}"): {"rate_limit_per_minute": 600},
    ("POST", "/api/v1/admin/api-keys/{key_id}/rotate"): {"grace_seconds": 3600},
    ("PUT", "/api/v1/admin/symbols/{symbol}"): {"active": True, "timeframes": ["1d"]},
}


def load_document() -> dict[str, Any]:
    from app import app
    from chalicelib.openapi import build_document

    return build_document(app.routes)


def render(document: dict[str, Any]) -> str:
    """The Markdown for `document`; deterministic, so the check can compare text."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    lines = [
        "# API reference",
        "",
        "<!-- Generated from /openapi.json by `python -m devtools.gen_api_docs`; do not edit. -->",
        "",
        document["info"]["description"],
        "",
        f"OpenAPI {document['openapi']} document: `GET /openapi.json`. "
        f"Version {document['info']['version']}.",
        "",
        "## Operations",
        "",
        "| method | path | scope | summary |",
        "|---|---|---|---|",
    ]
    operations = _operations(document)
    for method, path, op in operations:
        lines.append(
            f"| {method} | [`{path}`](#{_anchor(method, path)}) | {_scope(op)} | {op['summary']} |"
        )
    lines.append("")

    for tag in [t["name"] for t in document.get("tags", [])]:
        lines += [f"## {tag}", ""]
        for method, path, op in operations:
            if tag in op.get("tags", []):
                lines += _operation_section(method, path, op, schemas)

    lines += ["## Schemas", ""]
    for name, schema in schemas.items():
        lines += _schema_section(name, schema, schemas)
    return "\n".join(lines).rstrip() + "\n"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


def _anchor(method: str, path: str) -> str:
    text = f"{method} {path}".lower()
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _scope(op: dict[str, Any]) -> str:
    return str(op.get("x-scope", "public" if not op.get("security") else "read"))


def _operation_section(
    method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]
) -> list[str]:
    lines = [f"### {method} {path}", "", f"**{op['summary']}**", ""]
    description = op.get("description", "").strip()
    if description:
        lines += [description, ""]
    if not op.get("security"):
        lines += ["Public: no key needed.", ""]

    parameters = op.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | default | description |"]
        lines += ["|---|---|---|---|---|---|"]
        for parameter in parameters:
            schema = parameter.get("schema", {})
            default = schema.get("default")
            lines.append(
                f"| `{parameter['name']}` | {parameter['in']} | {_type(schema)} | "
                f"{'yes' if parameter.get('required') else 'no'} | "
                f"{_json_cell(default) if 'default' in schema else ''} | "
                f"{_cell(parameter.get('description', ''))} |"
            )
        lines.append("")

    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        lines += [f"Request body (JSON): {_type(schema)}", ""]

    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in op["responses"].items():
        content = response.get("content", {}).get("application/json", {})
        shape = _type(content["schema"]) if "schema" in content else ""
        lines.append(f"| {status} | {_cell(response['description'])} | {shape} |")
    lines.append("")

    curl = _curl(method, path, op)
    if "{key_id}" in curl:
        # A template: the id of a key the reader has, not one a fresh server holds.
        lines += ["A template: put one of your key ids in place of `{key_id}`.", ""]
        lines += ["```sh no-run", curl, "```", ""]
    else:
        lines += ["```sh", curl, "```", ""]
    return lines


def _curl(method: str, path: str, op: dict[str, Any]) -> str:
    concrete = path
    for name, value in _EXAMPLE_PATH_VALUES.items():
        concrete = concrete.replace("{" + name + "}", value)
    url = f"{EXAMPLE_HOST}{concrete}{_EXAMPLE_QUERIES.get(path, '') if method == 'GET' else ''}"
    parts = ["curl"]
    if method != "GET":
        parts.append(f"-X {method}")
    parts.append(f'"{url}"')
    if op.get("security"):
        parts.append('-H "Authorization: Bearer $MDW_KEY"')
    if op.get("requestBody"):
        example = _EXAMPLE_BODIES.get((method, path), {})
        parts.append("-H 'Content-Type: application/json'")
        parts.append(f"-d '{json.dumps(example)}'")
    return " \\\n  ".join(parts)


def _schema_section(name: str, schema: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    properties = schema.get("properties")
    if not properties:
        lines += [f"Type: {_type(schema)}", ""]
        return lines
    required = set(schema.get("required", ()))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field_name, field_schema in properties.items():
        description = field_schema.get("description", "")
        if "default" in field_schema and field_name not in required:
            description = f"{description} Default: {_json_cell(field_schema['default'])}."
        lines.append(
            f"| `{field_name}` | {_type(field_schema)} | "
            f"{'yes' if field_name in required else 'no'} | {_cell(description.strip())} |"
        )
    lines.append("")
    return lines


def _type(schema: dict[str, Any]) -> str:
    """A short human spelling of a JSON schema: `string (date)`, `[Bar](#bar)[]`, `"1m" | …`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and schema["additionalProperties"]:
        extra = schema["additionalProperties"]
        if isinstance(extra, dict):
            return f"object of {_type(extra)}"
    if kind is None:
        return "any"
    text = str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    bounds = [
        f"{label} {schema[key]}"
        for key, label in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
            ("minItems", "items ≥"),
            ("maxItems", "items ≤"),
        )
        if key in schema
    ]
    if bounds:
        text += f", {', '.join(bounds)}"
    return text


def _json_cell(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.gen_api_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/API.md is stale")
    parser.add_argument("--output", type=Path, default=API_DOC)
    args = parser.parse_args(argv)
    return write_or_check(
        args.output,
        render(load_document()),
        command="python -m devtools.gen_api_docs",
        check=args.check,
    )


if __name__ == "__main__":
    sys.exit(main())
