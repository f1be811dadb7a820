"""A bounded, thread-safe, in-memory store of things made once per process (QR images, font
subsets), the least recently used dropped beyond its limit. Never on disk: what is kept is
re-made from its inputs on a miss, so a restart or an eviction loses nothing but time."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()  # label runs of several requests may render at once
        self.made = 0  # items put, not found (for tests and the bench)

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, item: T) -> None:
        with self._lock:
            self.made += 1
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.made = 0

    def __len__(self) -> int:
        return len(self._items)
