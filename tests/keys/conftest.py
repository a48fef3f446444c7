"""API key tests start with empty in-container caches, as a new container would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.keys import access
from chalicelib.keys.middleware import rate_limiter


@pytest.fixture(autouse=True)
def _cold_container() -> Iterator[None]:
    access.statuses.clear()
    rate_limiter.clear()
    yield
    access.statuses.clear()
    rate_limiter.clear()
