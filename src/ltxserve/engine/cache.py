"""Small LRU caches for work that repeats across jobs: prompt enhancement and text encoding.

Both are exact: a hit returns exactly what the computation would (enhancement runs with a
fixed seed, so it is a function of its inputs; text encoding is deterministic). Keys carry
everything the output depends on, including the model, so a cache never outlives its meaning.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from PIL import Image

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class LRUCache(Generic[V]):
    """Thread-safe least-recently-used cache; ``size`` 0 disables it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        if self.size <= 0:
            self.stats.misses += 1
            return compute()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return self._items[key]
        value = compute()  # outside the lock: the engine serialises generation anyway
        with self._lock:
            self.stats.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get(self, key: Hashable) -> V | None:
        """The cached value, or None (counted as a miss: the caller computes and ``put``s it)."""
        with self._lock:
            if self.size > 0 and key in self._items:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return self._items[key]
            self.stats.misses += 1
            return None

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` (computed by the caller after a ``get`` miss), evicting the oldest."""
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.stats = CacheStats()


def image_digest(image: Image.Image | None) -> str | None:
    """A content key for a conditioning image (size, mode and pixels)."""
    if image is None:
        return None
    h = hashlib.sha256(f"{image.size}{image.mode}".encode())
    h.update(image.tobytes())
    return h.hexdigest()
