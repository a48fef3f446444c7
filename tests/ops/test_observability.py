"""JSON log lines and EMF metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.ops import observability

RAW_KEY = "mdw_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH1a2b3c"


def lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_an_event_is_one_json_line_with_the_bound_request_and_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with observability.bound(request_id="req-1", key_id="42"):
        observability.log_event("backfill.planned", messages=3)
    observability.log_event("after")

    first, second = lines(capsys.readouterr().out)
    assert first["event"] == "backfill.planned"
    assert first["request_id"] == "req-1"
    assert first["key_id"] == "42"
    assert first["messages"] == 3
    assert first["function"] == "local"
    assert "request_id" not in second


def test_credential_like_fields_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    observability.log_event(
        "oops", authorization=f"Bearer {RAW_KEY}", api_key=RAW_KEY, db_password="pw", note="ok"
    )

    out = capsys.readouterr().out
    (line,) = lines(out)
    assert RAW_KEY not in out
    assert line["authorization"] == observability.MASK
    assert line["api_key"] == observability.MASK
    assert line["db_password"] == observability.MASK
    assert line["note"] == "ok"


def test_a_request_line_carries_its_metrics_in_embedded_metric_format(
    capsys: pytest.CaptureFixture[str], set_env: Callable[..., None]
) -> None:
    set_env(AWS_LAMBDA_FUNCTION_NAME="mdw-prod-APIHandler-abc", METRICS_NAMESPACE="mdw-prod")

    observability.log_request(
        method="GET",
        route="/api/v1/symbols",
        path="/api/v1/symbols",
        status_code=200,
        latency_ms=12.3456,
        request_id="req-9",
        key_id=7,
    )

    (line,) = lines(capsys.readouterr().out)
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "mdw-prod"
    assert directive["Dimensions"] == [["Function"]]
    assert directive["Metrics"] == [
        {"Name": "Requests", "Unit": "Count"},
        {"Name": "Latency", "Unit": "Milliseconds"},
        {"Name": "AuthFailures", "Unit": "Count"},
    ]
    assert line["Function"] == "mdw-prod-APIHandler-abc"
    assert (line["Requests"], line["Latency"], line["AuthFailures"]) == (1, 12.346, 0)
    assert (line["request_id"], line["key_id"], line["status_code"]) == ("req-9", "7", 200)
    assert isinstance(line["_aws"]["Timestamp"], int)


@pytest.mark.parametrize(("status", "failures"), [(401, 1), (403, 1), (429, 0), (500, 0)])
def test_auth_failures_count_refusals_only(
    status: int, failures: int, capsys: pytest.CaptureFixture[str]
) -> None:
    observability.log_request(
        method="GET",
        route=None,
        path="/x",
        status_code=status,
        latency_ms=1.0,
        request_id=None,
        key_id=None,
        reason="revoked",
    )

    (line,) = lines(capsys.readouterr().out)
    assert line["AuthFailures"] == failures
    assert "key_id" not in line


def test_emit_metric_writes_one_metric_line(capsys: pytest.CaptureFixture[str]) -> None:
    observability.emit_metric("BarsWritten", 250, symbol="AAPL")

    (line,) = lines(capsys.readouterr().out)
    assert line["BarsWritten"] == 250
    assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "BarsWritten", "Unit": "Count"}
    ]
    assert line["symbol"] == "AAPL"


def test_the_formatter_keeps_a_traceback_inside_one_line() -> None:
    formatter = observability.JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "mdw", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    with observability.bound(request_id="req-3"):
        rendered = formatter.format(record)

    assert "\n" not in rendered
    payload = json.loads(rendered)
    assert payload["message"] == "failed x"
    assert payload["request_id"] == "req-3"
    assert "ValueError: boom" in payload["exception"]


def test_configure_logging_changes_nothing_outside_lambda(set_env: Callable[..., None]) -> None:
    set_env(AWS_LAMBDA_FUNCTION_NAME=None)
    root = logging.getLogger()
    before = [(handler, handler.formatter) for handler in root.handlers]

    observability.configure_logging()

    assert [(handler, handler.formatter) for handler in root.handlers] == before


def test_configure_logging_in_lambda_formats_as_json(
    set_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(AWS_LAMBDA_FUNCTION_NAME="mdw-dev-BackfillWorker-x")
    handler = logging.StreamHandler()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.WARNING)

    observability.configure_logging()

    assert isinstance(handler.formatter, observability.JsonFormatter)
    assert root.level == logging.INFO


def test_an_api_request_logs_one_line_with_its_key_id_and_never_the_key(
    client: Any, pinned_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.factories import make_key

    created = make_key(pinned_db)
    capsys.readouterr()

    response = client.http.get(
        "/api/v1/symbols", headers={"Authorization": f"Bearer {created.raw_key}"}
    )

    out = capsys.readouterr().out
    assert response.status_code == 200
    assert created.raw_key not in out
    (line,) = [entry for entry in lines(out) if entry["event"] == "request"]
    assert line["key_id"] == str(created.key.id)
    assert (line["method"], line["route"], line["status_code"]) == ("GET", "/api/v1/symbols", 200)
    assert line["Requests"] == 1
    assert line["request_id"]
