"""The worker's own provider client, as the Lambda runs it (no test double): built from the
settings, its key read once (from the environment or Secrets Manager), reused across messages
of one configuration, and pointed here at the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import boto3
import pytest

from chalicelib import db
from chalicelib.ops import worker
from devtools.polygon_sim import PolygonSimulator
from tests.factories import make_bars, make_symbol
from tests.ops.conftest import SIM_KEY

FRIDAY = "2025-11-21"
THURSDAY_BAR = datetime(2025, 11, 20, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    worker.forget_clients()
    yield
    worker.forget_clients()


def symbol_record(symbol: str) -> dict[str, str]:
    body = {"kind": "symbol", "symbol": symbol, "timeframe": "1d", "window": FRIDAY}
    return {"messageId": f"m-{symbol}", "body": json.dumps(body)}


def bar_requests(simulator: PolygonSimulator) -> list[str]:
    return [r.path for r in simulator.requests if r.path.startswith("/v2/")]


def test_the_worker_backfills_with_its_own_client_and_reuses_it(
    pinned_db: db.Connection, simulator: PolygonSimulator
) -> None:
    for symbol in ("AAPL", "MSFT"):
        make_symbol(pinned_db, symbol)
        make_bars(pinned_db, symbol, [THURSDAY_BAR])

    answer = worker.handle_batch([symbol_record("AAPL"), symbol_record("MSFT")])

    assert answer == {"batchItemFailures": []}
    assert bar_requests(simulator) == [
        f"/v2/aggs/ticker/AAPL/range/1/day/2025-11-20/{FRIDAY}",
        f"/v2/aggs/ticker/MSFT/range/1/day/2025-11-20/{FRIDAY}",
    ]
    assert {r.header("Authorization") for r in simulator.requests} == {f"Bearer {SIM_KEY}"}
    client = worker.provider_client()
    assert client is worker.provider_client()
    # Both messages' requests (a split check and a page of bars each) went through it.
    assert client.request_count == 4
    assert pinned_db.execute("SELECT count(*) FROM bars").fetchone() == (4,)


def test_a_new_configuration_gets_a_new_client(
    simulator: PolygonSimulator, set_env: Callable[..., None]
) -> None:
    first = worker.provider_client()
    set_env(POLYGON_API_KEY="another-key")

    second = worker.provider_client()

    assert second is not first
    assert worker.provider_client() is second


@pytest.mark.usefixtures("aws")
def test_the_key_can_come_from_secrets_manager(
    pinned_db: db.Connection, simulator: PolygonSimulator, set_env: Callable[..., None]
) -> None:
    arn = boto3.client("secretsmanager").create_secret(
        Name="mdw/polygon", SecretString=json.dumps({"api_key": SIM_KEY})
    )["ARN"]
    set_env(POLYGON_API_KEY=None, POLYGON_API_KEY_SECRET_ARN=arn)
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])

    answer = worker.handle_batch([symbol_record("AAPL")])

    assert answer == {"batchItemFailures": []}
    assert {r.header("Authorization") for r in simulator.requests} == {f"Bearer {SIM_KEY}"}
    assert bar_requests(simulator) == [f"/v2/aggs/ticker/AAPL/range/1/day/2025-11-20/{FRIDAY}"]


def test_a_wrong_key_fails_the_message_with_a_redacted_reason(
    pinned_db: db.Connection,
    simulator: PolygonSimulator,
    set_env: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(POLYGON_API_KEY="wrong-key-1234")
    make_symbol(pinned_db, "AAPL")
    make_bars(pinned_db, "AAPL", [THURSDAY_BAR])

    answer = worker.handle_batch([symbol_record("AAPL")])

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-AAPL"}]}
    (error,) = pinned_db.execute(
        "SELECT error FROM backfill_runs WHERE symbol = 'AAPL'"
    ).fetchone() or (None,)
    assert error is not None
    assert error.startswith("provider: GET /v3/reference/splits: 401 the API key was rejected")
    assert "wrong-key-1234" not in capsys.readouterr().out + error
