"""Tests cannot see each other's ids or caches."""

from __future__ import annotations

import psycopg
import pytest

from chalicelib import container
from tests.conftest import truncate_data
from tests.factories import make_key, make_symbol

pytestmark = pytest.mark.committed


def test_emptying_the_tables_between_tests_never_reuses_an_id(committed_db: str) -> None:
    # The session's `chalice local` keeps its key status cache across tests; were ids restarted,
    # the next test's first key would take an id that process may still remember.
    with psycopg.connect(committed_db, autocommit=True) as conn:
        first_key = make_key(conn).key.id
        make_symbol(conn, "AAPL")
    truncate_data(committed_db)
    with psycopg.connect(committed_db, autocommit=True) as conn:
        second_key = make_key(conn).key.id
        keys_left = conn.execute("SELECT count(*) FROM api_keys").fetchone()

    assert second_key > first_key
    assert keys_left == (1,)


def test_a_test_starts_with_an_empty_container() -> None:
    state = container.current

    assert state.settings is None
    assert state.database is None
    assert len(state.key_statuses) == 0
    assert state.rate_limiter.tracked_keys() == 0
    assert state.schema_current is False
