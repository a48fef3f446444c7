"""The container's state: one object, one reset, bounded caches, no state kept elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from chalicelib import container, db
from chalicelib.config import PROJECT_ROOT, get_settings
from chalicelib.container import BoundedCache, Container


class Closing:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_reset_forgets_everything_and_closes_what_it_opened(database_url: str) -> None:
    state = container.current
    settings = get_settings()
    source = db.get_database()
    with db.connection() as conn:
        conn.execute("SELECT 1")
    client = Closing()
    state.polygon_clients.put(("http://sim", "k", None), client)
    state.key_statuses.remember(7, None)
    state.rate_limiter.admit(7, 1)
    state.networks.put(("10.0.0.0/8",), ())
    state.secrets.put("arn", "value")
    state.queue_urls.put("q", "url")
    state.sqs_client = object()
    state.schema_current = True
    state.openapi_document = "{}"
    state.logging_configured = True

    container.reset()

    assert container.current is state  # one object: whoever holds it sees the reset
    assert client.closed == 1
    assert isinstance(source, db.Database)
    assert source._idle == []  # the pool was closed
    fresh = Container()
    for name in Container.__annotations__:
        value, empty = getattr(state, name), getattr(fresh, name)
        if hasattr(empty, "__len__"):
            assert len(value) == 0, name
        elif name in ("key_statuses", "rate_limiter"):
            continue
        else:
            assert value == empty, name
    assert state.key_statuses.status(7, ttl=10) == (False, None)
    assert state.rate_limiter.tracked_keys() == 0
    assert get_settings() == settings  # read again, from the same environment
    assert get_settings() is not settings


def test_the_bounded_cache_drops_the_least_recently_used_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    evicted: list[int] = []
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used

    made = cache.get_or_create("c", lambda: 3, on_evict=evicted.append)

    assert made == 3
    assert evicted == [2]
    assert "b" not in cache
    assert [cache.get("a"), cache.get("c")] == [1, 3]
    assert len(cache) == 2


def test_get_or_create_creates_once() -> None:
    cache: BoundedCache[str, object] = BoundedCache(4)
    made: list[object] = []

    def create() -> object:
        made.append(object())
        return made[-1]

    first = cache.get_or_create("k", create)
    second = cache.get_or_create("k", create)

    assert first is second
    assert len(made) == 1


def _module_level_state(path: Path) -> list[str]:
    """Module-level variables (not UPPER_CASE constant tables) bound to a mutable container,
    `global` statements and memoising decorators."""
    tree = ast.parse(path.read_text())
    found = [
        f"{path.name}:{node.lineno} global {', '.join(node.names)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]
    mutable_calls = {"dict", "list", "set", "deque", "OrderedDict", "WeakKeyDictionary"}
    for node in tree.body:
        value: Any = getattr(node, "value", None)
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
        is_mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", getattr(value.func, "attr", None)) in mutable_calls
        )
        if isinstance(node, ast.Assign | ast.AnnAssign) and is_mutable:
            names = [
                t.id
                for t in targets
                if isinstance(t, ast.Name) and not t.id.lstrip("_").isupper() and t.id != "__all__"
            ]
            found.extend(f"{path.name}:{node.lineno} {name}" for name in names)
    decorators = [
        f"{path.name}:{node.lineno} @cache {node.name}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
        if getattr(decorator, "id", getattr(decorator, "attr", None)) in ("cache", "lru_cache")
    ]
    return found + decorators


def test_no_module_keeps_state_outside_the_container() -> None:
    # Anything that could fill up or change between requests belongs in container.Container;
    # constant tables (UPPER_CASE) and the memos below, which hold what the shipped code
    # determines, are not state.
    allowed = {
        # the NYSE holiday calendar per year: immutable
        ("market/calendar.py", "_nyse_holidays"),
        # a flag mask's stored columns: at most one entry per combination of flags
        ("backfill/repository.py", "_stored_flags"),
        # the expected schema, read from the shipped migrations
        ("schema.py", "latest_version"),
        # the shipped page files, each read once: at most one entry per file under static/
        ("pages/assets.py", "_loaded"),
    }
    found = []
    for path in sorted((PROJECT_ROOT / "chalicelib").rglob("*.py")):
        relative = path.relative_to(PROJECT_ROOT / "chalicelib").as_posix()
        if relative in ("container.py", "route_table.py"):
            continue
        found.extend(
            f"{relative}: {entry}"
            for entry in _module_level_state(path)
            if (relative, entry.rsplit(" ", 1)[-1]) not in allowed
        )

    assert found == []
