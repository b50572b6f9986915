"""One in-memory cache with a size bound and a lock, for the dose engine and the beam model.

Least recently used entries go first once the cache holds more than
``max_entries`` entries or, when ``nbytes`` is given, more than ``max_bytes``
bytes; the newest entry is always kept. Every operation holds a lock, so
threads may share a cache; a value is made outside the lock (two threads may
both make it, and the second one stored wins).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """A least-recently-used mapping bounded by entry count and optionally by bytes."""

    def __init__(
        self,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        nbytes: Callable[[V], int] | None = None,
    ) -> None:
        if max_entries is None and max_bytes is None:
            raise ValueError("a BoundedCache needs max_entries or max_bytes")
        if max_bytes is not None and nbytes is None:
            raise ValueError("a BoundedCache bounded by max_bytes needs nbytes(value)")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._nbytes = nbytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held (0 for a cache bounded by entry count only)."""
        with self._lock:
            return self._bytes

    def get(self, key: Hashable) -> V | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` under ``key``, then drop the least recently used beyond the bounds."""
        size = self._nbytes(value) if self._nbytes is not None else 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (
                (self._max_entries is not None and len(self._items) > self._max_entries)
                or (self._max_bytes is not None and self._bytes > self._max_bytes)
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __getstate__(self) -> dict:
        """Pickled (e.g. sent to a worker process) empty: the bounds only, no entries, no lock."""
        return {
            "max_entries": self._max_entries,
            "max_bytes": self._max_bytes,
            "nbytes": self._nbytes,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
