"""The Polygon simulator on a real local port and a client with a fast retry policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.polygon import PolygonClient
from devtools.polygon_sim import PolygonSimulator

SIM_API_KEY = "sim-key-5f2b9c7d41e8"
# Generous, so a loaded machine never turns a normal answer into a timeout; the slow-answer
# fault sleeps past it on purpose.
CLIENT_TIMEOUT = 1.5
MAX_RETRIES = 2


@pytest.fixture
def simulator() -> Iterator[PolygonSimulator]:
    with PolygonSimulator(api_key=SIM_API_KEY) as sim:
        yield sim


def make_client(simulator: PolygonSimulator, *, max_retries: int = MAX_RETRIES) -> PolygonClient:
    """A client of the simulator whose retries come after a few milliseconds."""
    return PolygonClient(
        simulator.url,
        SIM_API_KEY,
        timeout=CLIENT_TIMEOUT,
        max_retries=max_retries,
        backoff_base=0.005,
        max_backoff=0.02,
        jitter=0.0,
    )


@pytest.fixture
def polygon(simulator: PolygonSimulator) -> Iterator[PolygonClient]:
    """A client of the simulator that retries twice, after a few milliseconds."""
    with make_client(simulator) as client:
        yield client
