"""What a container keeps between requests and invocations, in one object with one `reset()`.

A Lambda container (or a `chalice local` process, a CLI run, a test session) serves many
requests; everything it remembers across them is a field of `Container`, and `current` is the
one instance. Each field is owned by the module that fills it (named beside it); none is a
module-level variable of its own. `reset()` forgets all of it at once: tests call it between
tests, and a process that changes its own environment calls it so the next read starts over.
Every cache is bounded.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from chalicelib.keys.rate_limit import RateLimiter
from chalicelib.keys.status_cache import StatusCache

if TYPE_CHECKING:
    import psycopg

    from chalicelib.config import Settings

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Bounds of the caches that grow with what callers send or configure.
MAX_CACHED_NETWORK_LISTS = 1_024
MAX_CACHED_SECRETS = 64
MAX_CACHED_CLIENTS = 16


class BoundedCache(Generic[K, V]):
    """A thread-safe mapping that keeps at most `max_entries`, dropping the least recently
    used first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Store `value` under `key` and return it; evicted values are returned by nothing
        (`on_evict` of `get_or_create` closes what needs closing)."""
        self._store(key, value)
        return value

    def get_or_create(
        self, key: K, create: Callable[[], V], *, on_evict: Callable[[V], None] | None = None
    ) -> V:
        value = self.get(key)
        if value is not None:
            return value
        value = create()
        for evicted in self._store(key, value):
            if on_evict is not None:
                on_evict(evicted)
        return value

    def _store(self, key: K, value: V) -> list[V]:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            evicted = []
            while len(self._entries) > self.max_entries:
                evicted.append(self._entries.popitem(last=False)[1])
            return evicted

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._entries.pop(key, None)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _Closeable(Protocol):
    def close(self) -> None: ...


class Container:
    """Everything this process remembers between requests. Fields are filled lazily by
    their owners (named beside each); a fresh container, or one just reset, holds nothing."""

    # config.get_settings: the settings, read from the environment once.
    settings: Settings | None
    # db.get_database: the connection source (the pool, or a test's pinned connection).
    database: Any
    # db.embedded_server_url: embedded PostgreSQL servers by data directory. Forgetting them
    # stops nothing: pgserver keeps a server until the last process using it exits.
    embedded_servers: dict[Path, Any]
    # health.service.require_current: the schema was found current once.
    schema_current: bool
    # keys.access: key statuses by id and key ids by token hash, trusted for the auth TTL.
    key_statuses: StatusCache
    # keys.access.source_ip_allowed: parsed allow-lists.
    networks: BoundedCache[tuple[str, ...], tuple[IpNetwork, ...]]
    # keys.middleware: the per-key rate limit as this container sees it.
    rate_limiter: RateLimiter
    # keys.repository: one binary cursor per connection for key lookups; an entry goes with
    # its connection.
    status_cursors: weakref.WeakKeyDictionary[Any, psycopg.Cursor[tuple[Any, ...]]]
    # openapi.document_json: the API document as JSON text (the routes cannot change).
    openapi_document: str | None
    # secrets: Secrets Manager values by ARN.
    secrets: BoundedCache[str, str]
    # ops.queue: the SQS client (or `make run`'s stand-in) and queue URLs by name.
    sqs_client: Any
    queue_urls: BoundedCache[str, str]
    # ops.worker.provider_client: Polygon clients by (base URL, key, key secret ARN).
    polygon_clients: BoundedCache[tuple[str, str | None, str | None], Any]
    # ops.observability.configure_logging: Lambda's log handler writes JSON lines.
    logging_configured: bool
    # ops.observability.write_records_with: where log records go instead of stdout (None: JSON
    # lines on stdout).
    log_sink: Callable[[Mapping[str, Any]], None] | None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._empty()

    def _empty(self) -> None:
        self.settings = None
        self.database = None
        self.embedded_servers = {}
        self.schema_current = False
        self.key_statuses = StatusCache()
        self.networks = BoundedCache(MAX_CACHED_NETWORK_LISTS)
        self.rate_limiter = RateLimiter()
        self.status_cursors = weakref.WeakKeyDictionary()
        self.openapi_document = None
        self.secrets = BoundedCache(MAX_CACHED_SECRETS)
        self.sqs_client = None
        self.queue_urls = BoundedCache(MAX_CACHED_CLIENTS)
        self.polygon_clients = BoundedCache(MAX_CACHED_CLIENTS)
        self.logging_configured = False
        self.log_sink = None

    def reset(self) -> None:
        """Forget everything, closing the connection pool and the provider clients."""
        with self._lock:
            closeables: list[_Closeable] = list(self.polygon_clients.values())
            if self.database is not None and hasattr(self.database, "close"):
                closeables.append(self.database)
            self._empty()
        for resource in closeables:
            try:
                resource.close()
            except Exception:
                log.exception("could not close %r while resetting the container", resource)


# The one container of this process.
current = Container()


def reset() -> None:
    """Forget everything this process remembers (see `Container.reset`)."""
    current.reset()
