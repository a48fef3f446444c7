"""Plain factory functions for test data."""

from __future__ import annotations

import itertools
from typing import Any

from chalicelib import db
from chalicelib.keys import service as keys_service
from chalicelib.keys.models import CreatedKey

_sequence = itertools.count(1)


def make_key(conn: db.Connection, **overrides: Any) -> CreatedKey:
    options: dict[str, Any] = {"name": f"test-key-{next(_sequence)}", "scopes": ["read"]}
    options.update(overrides)
    return keys_service.create_key(conn, **options)


def make_admin_key(conn: db.Connection, **overrides: Any) -> CreatedKey:
    return make_key(conn, scopes=["read", "admin"], **overrides)
