"""A short-lived attribute cache keyed by remote path, with an injected clock.

Directory listings fill it, so ``ls -l`` of N files costs one request instead of N+1.
Entries live ``ttl`` seconds; every mutation made through the mount invalidates the path
(and its parent's listing is re-fetched on the next ``opendir`` anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import paths
from .models import FileInfo

Clock = Callable[[], float]


class AttrCache:
    """Path -> FileInfo for ``ttl`` seconds.

    Every mutation drops a subtree (``invalidate_tree``), so the paths are also indexed by
    parent: dropping a subtree costs its size, not a scan of the whole cache (which holds
    ten thousand entries right after an ``ls -l`` of a big directory).
    """

    def __init__(self, ttl: float, clock: Clock = time.monotonic, max_entries: int = 100_000):
        self.ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[float, FileInfo]] = {}
        self._children: dict[str, set[str]] = {}  # parent -> children with cached descendants
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> FileInfo | None:
        item = self._entries.get(path)
        if item is None or item[0] <= self._clock():
            if item is not None:
                del self._entries[path]
            self.misses += 1
            return None
        self.hits += 1
        return item[1]

    def put(self, path: str, info: FileInfo) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self.clear()
        self._entries[path] = (self._clock() + self.ttl, info)
        child = path
        while child != "/":
            parent, _ = paths.split(child)
            siblings = self._children.setdefault(parent, set())
            if child in siblings:
                break  # the chain above is indexed already
            siblings.add(child)
            child = parent

    def invalidate(self, path: str) -> None:
        self._entries.pop(path, None)

    def invalidate_tree(self, path: str) -> None:
        if path == "/":
            self.clear()
            return
        pending = [path]
        while pending:
            current = pending.pop()
            self._entries.pop(current, None)
            pending.extend(self._children.pop(current, ()))
        parent, _ = paths.split(path)
        self._children.get(parent, set()).discard(path)

    def clear(self) -> None:
        self._entries.clear()
        self._children.clear()
