"""docs/API.md is generated from /openapi.json and must not go stale."""

from __future__ import annotations

from devtools.gen_api_docs import API_DOC, load_document, render


def test_api_doc_is_current() -> None:
    expected = render(load_document())

    assert API_DOC.exists(), "docs/API.md is missing: run `python -m devtools.gen_api_docs`"
    assert API_DOC.read_text() == expected, (
        "docs/API.md is stale: run `python -m devtools.gen_api_docs`"
    )


def test_every_operation_has_a_section_and_a_curl_example() -> None:
    document = load_document()
    text = render(document)

    for path, methods in document["paths"].items():
        for method in methods:
            assert f"### {method.upper()} {path}\n" in text
    runnable, templates = text.count("```sh\ncurl"), text.count("```sh no-run\ncurl")
    assert runnable + templates == sum(len(m) for m in document["paths"].values())
    # Only the operations on one key need an id the reader fills in.
    assert templates == sum(
        len(methods) for path, methods in document["paths"].items() if "{key_id}" in path
    )
