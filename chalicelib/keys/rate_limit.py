"""The per-key rate limit as one container sees it (docs: API_KEY_MANAGEMENT.md, "Rate
limits"). It remembers at most `max_keys` keys: past that, keys with nothing in the current
window go first, then the key admitted least recently. Forgetting a key can only let it through
sooner, never refuse a request wrongly, and the audit statement still counts its window."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_LIMITED_KEYS = 10_000


class RateLimiter:
    """Per key: the times this container admitted its requests in the last window, and until
    when (monotonic) the shared window is full, as the last audit write said."""

    WINDOW_SECONDS = 60.0

    def __init__(self, *, max_keys: int = MAX_LIMITED_KEYS) -> None:
        self.max_keys = max_keys
        self._admitted: OrderedDict[int, deque[float]] = OrderedDict()
        self._full_until: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._monotonic = time.monotonic

    def admit(self, key_id: int, limit: int) -> float:
        """Take a slot now and return 0, or return the seconds until one frees (nothing taken).

        Check and take happen under one lock: racing threads cannot both take the last slot.
        """
        with self._lock:
            now = self._monotonic()
            entry = self._full_until.get(key_id)
            # A changed limit starts over: the shared count was measured against the old one.
            if entry is not None and entry[0] == limit and entry[1] > now:
                return entry[1] - now
            admitted = self._admitted.get(key_id)
            if admitted is None:
                self._make_room(now)
                admitted = self._admitted[key_id] = deque()
            while admitted and admitted[0] <= now - self.WINDOW_SECONDS:
                admitted.popleft()
            if len(admitted) >= limit:
                # The oldest admissions free their slots; the limit may have been lowered.
                return admitted[len(admitted) - limit] + self.WINDOW_SECONDS - now
            admitted.append(now)
            self._admitted.move_to_end(key_id)
            return 0.0

    def observe(self, key_id: int, limit: int, *, used: int, seconds_until_slot: float) -> None:
        """Learn the shared window from the audit statement (every container's requests)."""
        with self._lock:
            if used >= limit and seconds_until_slot > 0:
                now = self._monotonic()
                if self._full_until.pop(key_id, None) is None:
                    self._make_room(now)
                self._full_until[key_id] = (limit, now + seconds_until_slot)
            else:
                self._full_until.pop(key_id, None)

    def _make_room(self, now: float) -> None:
        """Before a new key enters either map: keep each below `max_keys` (under the lock)."""
        if len(self._admitted) >= self.max_keys:
            window_start = now - self.WINDOW_SECONDS
            idle = [k for k, t in self._admitted.items() if not t or t[-1] <= window_start]
            for key_id in idle:
                del self._admitted[key_id]
            while len(self._admitted) >= self.max_keys:
                self._admitted.popitem(last=False)
        if len(self._full_until) >= self.max_keys:
            for key_id in [k for k, (_, until) in self._full_until.items() if until <= now]:
                del self._full_until[key_id]
            while len(self._full_until) >= self.max_keys:
                self._full_until.popitem(last=False)

    def tracked_keys(self) -> int:
        return len(self._admitted)

    def clear(self) -> None:
        with self._lock:
            self._admitted.clear()
            self._full_until.clear()
