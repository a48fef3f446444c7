"""The in-container cache of key statuses that the authorizer and the middleware read.

Its entries live for `AUTH_CACHE_TTL_SECONDS` (how long a revocation can take to reach a warm
container) and it holds at most `max_entries` keys and token hashes each, dropping the least
recently stored first, so a flood of distinct tokens cannot grow a container without bound.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from chalicelib.keys.models import KeyStatus

MAX_CACHED_KEYS = 10_000


class StatusCache:
    """Key statuses by id, and key ids by token hash, each trusted for `ttl` seconds.

    Shared by the request threads of a container (Chalice's local server is threaded).
    """

    def __init__(self, *, max_entries: int = MAX_CACHED_KEYS) -> None:
        self.max_entries = max_entries
        self._by_id: OrderedDict[int, tuple[float, KeyStatus | None]] = OrderedDict()
        self._id_by_hash: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._monotonic = time.monotonic

    def status(self, key_id: int, *, ttl: float) -> tuple[bool, KeyStatus | None]:
        """(found, status): a fresh entry may say the key no longer exists (status None)."""
        entry = self._by_id.get(key_id)
        if entry is None or self._monotonic() - entry[0] >= ttl:
            return False, None
        return True, entry[1]

    def key_id_for(self, key_hash: bytes, *, ttl: float) -> int | None:
        entry = self._id_by_hash.get(key_hash)
        if entry is None or self._monotonic() - entry[0] >= ttl:
            return None
        return entry[1]

    def remember(
        self, key_id: int, status: KeyStatus | None, *, key_hash: bytes | None = None
    ) -> None:
        now = self._monotonic()
        with self._lock:
            self._by_id.pop(key_id, None)
            self._by_id[key_id] = (now, status)
            while len(self._by_id) > self.max_entries:
                self._by_id.popitem(last=False)
            if key_hash is not None:
                self._id_by_hash.pop(key_hash, None)
                self._id_by_hash[key_hash] = (now, key_id)
                while len(self._id_by_hash) > self.max_entries:
                    self._id_by_hash.popitem(last=False)

    def __len__(self) -> int:
        return len(self._by_id)

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._id_by_hash.clear()
